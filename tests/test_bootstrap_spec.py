"""Bootstrap unit tests: spec validation, interpolation, label config generation, the task
file builder. No servers (the e2e module checks the configs against a real Label Studio)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bootstrap import label_configs as LC
from bootstrap import spec as S
from bootstrap.cli import DEFAULT_SPEC, app
from bootstrap.errors import SpecError
from bootstrap.planner import canonical_xml
from bootstrap.tasks import build_tasks

STACK = {"bucketNames": {"source-segmentation": "seg-bucket",
                         "source-dermatology": "derm-bucket", "annotations": "ann-bucket"}}


def shipped(**overrides) -> dict:
    raw = yaml.safe_load(DEFAULT_SPEC.read_text())
    raw.update(overrides)
    return raw


def parse(raw: dict, **kw) -> S.Spec:
    return S.parse_spec(yaml.safe_dump(raw), env=kw.pop("env", {}),
                        stack_outputs=kw.pop("stack", STACK), stack_file="stack.json")


def test_shipped_spec_resolves_stack_outputs():
    spec = parse(shipped())
    assert [p.key for p in spec.projects] == ["sam2-segmentation", "derm-lesion-tracking",
                                              "sam2-video"]
    assert [p.enabled for p in spec.projects] == [True, True, False]  # video: optional, off
    sam2 = spec.projects[0]
    assert sam2.import_storage[0].bucket == "seg-bucket"
    assert spec.projects[1].import_storage[0].bucket == "derm-bucket"
    assert sam2.export_storage[0].bucket == "ann-bucket"
    assert sam2.ml_backend and sam2.ml_backend.interactive
    assert sam2.ml_backend.url == "http://sam2-backend.labelstack.svc.cluster.local:9090"
    custom = parse(shipped(), env={"SAM2_BACKEND_URL": "http://10.0.0.7:9090"})
    assert custom.projects[0].ml_backend.url == "http://10.0.0.7:9090"
    # secure defaults: proxy (no presign), no credentials fields exist at all
    assert all(not s.presign for p in spec.projects for s in p.import_storage)
    assert "aws_access_key_id" not in S.ImportStorage.model_fields


def test_env_interpolation_inside_strings():
    raw = shipped()
    raw["projects"][0]["description"] = "team ${env:TEAM} owns it"
    spec = parse(raw, env={"TEAM": "vision"})
    assert spec.projects[0].description == "team vision owns it"


def test_missing_env_var_names_field_and_fix():
    raw = shipped()
    raw["projects"][1]["import_storage"][0]["bucket"] = "${env:DERM_BUCKET}"
    with pytest.raises(SpecError) as e:
        parse(raw)
    assert e.value.field == "projects[1].import_storage[0].bucket"
    assert "DERM_BUCKET is not set" in str(e.value)


def test_missing_stack_output_lists_available():
    with pytest.raises(SpecError) as e:
        parse(shipped(), stack={"bucketNames": {"annotations": "b-1"}, "vpcId": "vpc-1"})
    assert e.value.field == "projects[0].import_storage[0].bucket"
    assert "bucketNames.source-segmentation" in str(e.value) and "vpcId" in str(e.value)
    with pytest.raises(SpecError, match="--stack-outputs"):
        S.parse_spec(DEFAULT_SPEC.read_text(), env={})


def test_unknown_field_is_rejected_with_its_path():
    raw = shipped()
    raw["projects"][0]["import_storage"][0]["aws_secret_access_key"] = "nope"
    with pytest.raises(SpecError) as e:
        parse(raw)
    assert e.value.field == "projects[0].import_storage[0].aws_secret_access_key"
    assert "unknown field" in str(e.value)


def test_unknown_field_in_label_config_union():
    raw = shipped()
    raw["projects"][0]["label_config"]["colour"] = "red"
    with pytest.raises(SpecError) as e:
        parse(raw)
    assert "colour" in e.value.field


@pytest.mark.parametrize(("path", "value", "needle"), [
    (("import_storage", 0, "bucket"), "Bad_Bucket", "bucket name"),
    (("import_storage", 0, "regex_filter"), "([", "regular expression"),
    (("import_storage", 0, "task_format"), "csv", "object_per_task"),
    (("title",), "ab", "at least 3"),
    (("key",), "Has Spaces", "lowercase"),
    (("maximum_annotations",), 0, "greater than or equal to 1"),
])
def test_bad_values_name_field_value_and_fix(path, value, needle):
    raw = shipped()
    node = raw["projects"][0]
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    with pytest.raises(SpecError) as e:
        parse(raw)
    assert e.value.field.endswith(".".join(str(p) for p in path).replace(".0.", "[0].")), \
        e.value.field
    assert repr(value) in str(e.value) and needle in str(e.value)


def test_duplicate_project_keys_rejected():
    raw = shipped()
    raw["projects"][1]["key"] = raw["projects"][0]["key"]
    with pytest.raises(SpecError, match="unique"):
        parse(raw)


@pytest.mark.parametrize(("attr", "example"), [("basic_auth_user_env", "SAM2_BASIC_AUTH_USER"),
                                               ("basic_auth_password_env", "SAM2_BASIC_AUTH_PASS")])
def test_basic_auth_without_env_var_names_rejected(attr, example):
    raw = shipped()
    del raw["projects"][0]["ml_backend"][attr]
    with pytest.raises(SpecError) as e:
        parse(raw)
    assert e.value.field == f"projects[sam2-segmentation].ml_backend.{attr}"
    assert f"add `{attr}: {example}`" in str(e.value)


AUTH_ENV = {"SAM2_BASIC_AUTH_USER": "label-studio", "SAM2_BASIC_AUTH_PASS": "pw"}


@pytest.mark.parametrize(("env", "attr", "var", "state", "what"), [
    ({}, "basic_auth_user_env", "SAM2_BASIC_AUTH_USER", "is not set", "user"),
    ({**AUTH_ENV, "SAM2_BASIC_AUTH_USER": ""}, "basic_auth_user_env", "SAM2_BASIC_AUTH_USER",
     "is empty", "user"),
    ({"SAM2_BASIC_AUTH_USER": "label-studio"}, "basic_auth_password_env", "SAM2_BASIC_AUTH_PASS",
     "is not set", "password"),
])
def test_basic_auth_env_unset_or_empty_names_project_field_var_and_fix(env, attr, var, state,
                                                                        what):
    sam2 = parse(shipped()).projects[0]
    with pytest.raises(SpecError) as e:
        S.basic_auth_credentials(sam2, env)
    assert e.value.field == f"projects[sam2-segmentation].ml_backend.{attr}"
    assert e.value.value == var and e.value.exit_code == 2
    assert f"{var} {state}" in str(e.value)
    assert f"set {var} to the backend's {what}, the same value the backend runs with" \
        in str(e.value)


def test_basic_auth_credentials_read_from_the_named_vars():
    sam2, derm = parse(shipped()).projects[:2]
    assert S.basic_auth_credentials(sam2, AUTH_ENV) == ("label-studio", "pw")
    assert S.basic_auth_credentials(derm, {}) is None  # no ML backend: nothing to send


def test_sam2_labels_identical_in_all_three_tags():
    xml = LC.sam2_segmentation(["Lesion", "Ruler & scale", "Ink"])
    root = ET.fromstring(xml)
    tags = {el.tag: el for el in root if el.tag.endswith("Labels")}
    assert set(tags) == {"KeyPointLabels", "RectangleLabels", "BrushLabels"}
    values = {t: [lab.get("value") for lab in el] for t, el in tags.items()}
    assert values["KeyPointLabels"] == values["RectangleLabels"] == values["BrushLabels"] == [
        "Lesion", "Ruler & scale", "Ink"]
    assert tags["KeyPointLabels"].get("smart") == tags["RectangleLabels"].get("smart") == "true"
    hotkeys = [lab.get("hotkey") for el in tags.values() for lab in el if lab.get("hotkey")]
    assert len(hotkeys) == len(set(hotkeys)) == 6  # points and boxes, no clash between tools
    assert not any(h.startswith(("ctrl+", "alt+")) for h in hotkeys)  # browser tab keys
    image = root.find("Image")
    assert image.get("zoom") == image.get("zoomControl") == "true"


def test_sam2_rejects_duplicates_and_empty():
    with pytest.raises(SpecError, match="duplicate"):
        LC.sam2_segmentation(["A", "A"])
    with pytest.raises(SpecError):
        LC.sam2_segmentation([])


def test_derm_config_structure_from_ontology():
    onto = LC.load_ontology(Path("bootstrap/ontology/lesion_types.yaml"))
    root = ET.fromstring(LC.derm_lesion_tracking(onto))
    image = root.find("Image")
    assert image.get("valueList") == "$images"
    poly = root.find("PolygonLabels")
    assert poly.get("strokeWidth") == "3" and poly.get("pointSize") == "small"
    assert [lab.get("value") for lab in poly] == [t.value for t in onto.lesion_types]
    by_name = {el.get("name"): el for el in root.iter() if el.get("name")}
    assert by_name["track_id"].tag == "Number" and by_name["track_id"].get("perRegion") == "true"
    assert [c.get("value") for c in by_name["status"]] == list(LC.LESION_STATUSES)
    assert by_name["region_note"].get("displayMode") == "region-list"
    assert by_name["visit_assessment"].get("perItem") == "true"
    assert by_name["visit_assessment"].get("perRegion") is None
    assert root.find("Video") is None  # video tracking is its own project (sam2_video)


def test_sam2_video_config_hotkeys_clear_of_label_studio_keymap():
    root = ET.fromstring(LC.sam2_video(["Car", "Person <&>"], frame_rate=29.97))
    video, box, labels = root.find("Video"), root.find("VideoRectangle"), root.find("Labels")
    assert video.get("value") == "$video" and video.get("framerate") == "29.97"
    assert box.get("smart") == "true" and box.get("toName") == labels.get("toName") == "video"
    assert [lab.get("value") for lab in labels] == ["Car", "Person <&>"]
    # Label Studio 1.23's default keymap binds letters (tools) and modifier combinations
    # (shift+1/2 zoom, ctrl+z undo, alt/ctrl+alt/shift+alt arrows for video): plain digits only
    assert [lab.get("hotkey") for lab in labels] == ["1", "2"]
    for bad, field in ((["A", "A"], "labels"), ([], "labels")):
        with pytest.raises(SpecError, match=field):
            LC.sam2_video(bad)
    with pytest.raises(SpecError, match="frame_rate"):
        LC.sam2_video(["A"], frame_rate=0)


def test_video_project_renders_when_enabled():
    raw = shipped()
    raw["projects"][2]["enabled"] = True
    assert S.render_label_config(parse(raw).projects[2], DEFAULT_SPEC.parent).count(
        'smart="true"') == 1


def test_ontology_errors(tmp_path):
    f = tmp_path / "o.yaml"
    f.write_text("name: x\nversion: 1\nlesion_types:\n  - {value: A}\n  - {value: A}\n")
    with pytest.raises(SpecError, match="duplicate"):
        LC.load_ontology(f)
    f.write_text("name: x\nversion: 1\nlesion_types:\n  - {value: A, colour: red}\n")
    with pytest.raises(SpecError, match="colour"):
        LC.load_ontology(f)
    with pytest.raises(SpecError, match="cannot read"):
        LC.load_ontology(tmp_path / "missing.yaml")


def test_retired_lesion_types_left_out(tmp_path):
    f = tmp_path / "o.yaml"
    f.write_text("name: x\nversion: 2\nlesion_types:\n  - {value: A}\n  - {value: B, "
                 "retired: true}\n")
    assert LC.config_labels(LC.derm_lesion_tracking(LC.load_ontology(f)))["lesion"] == {"A"}


def test_marker_roundtrip_and_not_title():
    p = parse(shipped()).projects[0]
    desc = S.managed_description(p)
    assert S.marker_key(desc) == "sam2-segmentation"
    assert S.marker_key(p.title) is None
    assert S.marker_key("notes\nlabelstack-managed-key:other\n") == "other"


def test_canonical_xml_ignores_formatting_only():
    a = "<View><Image name='i' value='$i'/></View>"
    b = '<View>\n  <Image value="$i" name="i" />\n</View>\n'
    assert canonical_xml(a) == canonical_xml(b)
    assert canonical_xml(a) != canonical_xml(a.replace("$i'", "$j'"))


def test_task_builder_groups_orders_and_skips():
    keys = ["patients/P2/2024-03-01/b.jpg", "patients/P2/2023-12-24/z.png",
            "patients/P2/2024-03-01/a.jpg", "patients/P1/2024-01-01/x.jpeg",
            "patients/P1/notadate/x.jpg", "patients/P1/2024-01-01/readme.txt",
            "patients/stray.jpg"]
    tasks, skipped = build_tasks("bkt", keys, "patients/")
    assert list(tasks) == ["P1", "P2"]
    assert tasks["P2"]["images"] == ["s3://bkt/patients/P2/2023-12-24/z.png",
                                     "s3://bkt/patients/P2/2024-03-01/a.jpg",
                                     "s3://bkt/patients/P2/2024-03-01/b.jpg"]
    assert tasks["P2"]["visit_dates"] == ["2023-12-24", "2024-03-01", "2024-03-01"]
    assert tasks["P2"]["visits"] == "2023-12-24, 2024-03-01"
    assert sorted(skipped) == sorted(keys[4:])
    json.dumps(tasks)  # serialisable as task files


def run_cli(tmp_path, verb: str, raw: dict):
    """`verb` on spec `raw` against an address where nothing listens."""
    f = tmp_path / "spec.yaml"
    f.write_text(yaml.safe_dump(raw))
    stack = tmp_path / "stack.json"
    stack.write_text(json.dumps(STACK))
    return CliRunner().invoke(app, [verb, "--spec", str(f), "--stack-outputs", str(stack),
                                    "--url", "http://127.0.0.1:9"])


def test_cli_unknown_field_exit_code(tmp_path):
    raw = shipped()
    raw["projects"][0]["titel"] = "typo"
    r = run_cli(tmp_path, "plan", raw)
    assert r.exit_code == 2
    assert "projects[0].titel" in r.output and "unknown field" in r.output


def test_cli_missing_token_is_an_error_not_a_prompt(tmp_path, monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY_FILE", raising=False)
    stack = tmp_path / "stack.json"
    stack.write_text(json.dumps(STACK))
    r = CliRunner().invoke(app, ["plan", "--stack-outputs", str(stack), "--url",
                                 "http://127.0.0.1:9"])
    assert r.exit_code == 2 and "LABEL_STUDIO_API_KEY" in r.output


def test_cli_basic_auth_without_env_var_name_exit_code(tmp_path):
    raw = shipped()
    del raw["projects"][0]["ml_backend"]["basic_auth_user_env"]
    r = run_cli(tmp_path, "apply", raw)
    assert r.exit_code == 2
    # the project key in brackets survives the console (it is not taken as markup)
    assert "projects[sam2-segmentation].ml_backend.basic_auth_user_env" in \
        " ".join(r.output.split())
