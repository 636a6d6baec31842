"""Against a real Label Studio: predictions imported (masks, YOLO), annotations made from them,
exports from the live projects with provenance, and bad input that writes nothing."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from label_studio_sdk import LabelStudio
from PIL import Image
from typer.testing import CliRunner

from bootstrap.label_configs import derm_lesion_tracking, load_ontology, sam2_segmentation
from exports.source import iter_project_tasks
from labelstack.cli import cli

pytestmark = pytest.mark.servers

SIZES = {"a": (64, 48), "b": (80, 60)}


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _mask(width: int, height: int, seed: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return (((xx - 5 * seed) ** 2 + (yy - 3 * seed) ** 2) < (8 + seed) ** 2).astype(np.uint8) * 255


@pytest.fixture(scope="module")
def ls(label_studio, tmp_path_factory):
    """(server, SDK client, env for the CLI with a personal access token)."""
    key = label_studio.personal_access_token()
    client = LabelStudio(base_url=label_studio.url, api_key=key)
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": key}
    return label_studio, client, env


def _run(env: dict[str, str], *args: str):
    return CliRunner().invoke(cli, list(args), env=env)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _predictions(client: LabelStudio, task_id: int) -> list[dict]:
    return [p.dict() if hasattr(p, "dict") else p
            for p in client.predictions.list(task=task_id)]


@pytest.fixture(scope="module")
def sam2_project(ls):
    server, client, _ = ls
    project = client.projects.create(title="Exports SAM2",
                                     label_config=sam2_segmentation(["Lesion", "Ruler"]))
    headers = {"Authorization": f"Token {server.legacy_token}"}
    for name, (w, h) in SIZES.items():
        r = httpx.post(f"{server.url}/api/projects/{project.id}/import", headers=headers,
                       files={"file": (f"{name}.png", _png(w, h), "image/png")}, timeout=60)
        assert r.status_code == 201, r.text
    tasks = sorted(client.tasks.list(project=project.id), key=lambda t: t.id)
    return project.id, {name: t.id for name, t in zip(SIZES, tasks, strict=True)}


def test_mask_predictions_import_then_export_keeps_provenance(ls, sam2_project, tmp_path):
    server, client, env = ls
    project, tasks = sam2_project
    masks = {("a", "Lesion"): _mask(64, 48, 1), ("a", "Ruler"): _mask(64, 48, 2),
             ("b", "Lesion__1"): _mask(80, 60, 3), ("b", "Lesion__2"): _mask(80, 60, 4)}
    folder = tmp_path / "masks"
    for (task, stem), mask in masks.items():
        (folder / str(tasks[task])).mkdir(parents=True, exist_ok=True)
        if stem == "Ruler":
            np.save(folder / str(tasks[task]) / f"{stem}.npy", mask)
        else:
            Image.fromarray(mask).save(folder / str(tasks[task]) / f"{stem}.png")
    args = ("predictions", "import", "--project", str(project), "--masks", str(folder),
            "--model-version", "sam2-t@1", "--score", "0.8")
    r = _run(env, *args)
    assert r.exit_code == 0, r.output
    assert "2 created" in r.output
    r = _run(env, *args)  # the same version again: nothing duplicated
    assert r.exit_code == 0 and "2 unchanged" in r.output, r.output
    for task in tasks.values():
        (prediction,) = _predictions(client, task)
        assert prediction["model_version"] == "sam2-t@1" and prediction["score"] == 0.8
    # a mask of the wrong size: a clear error, nothing written
    bad = folder / str(tasks["b"]) / "Ruler.png"
    Image.fromarray(_mask(64, 48, 5)).save(bad)
    r = _run(env, *args[:-2], "--score", "0.9")
    assert r.exit_code == 2
    assert f"task {tasks['b']}: mask Ruler.png is 64x48 but field data.image" in r.output
    assert "80x60" in r.output
    assert [p["score"] for p in _predictions(client, tasks["b"])] == [0.8]
    bad.unlink()

    # the annotator accepts the prediction of task a (the frontend copies its regions and
    # records parent_prediction), keeps the Lesion region and draws a new Ruler region
    (prediction,) = _predictions(client, tasks["a"])
    kept = next(r for r in prediction["result"] if r["value"]["brushlabels"] == ["Lesion"])
    drawn = {**next(r for r in prediction["result"] if r["value"]["brushlabels"] == ["Ruler"]),
             "id": "hand1", "origin": "manual"}
    headers = {"Authorization": f"Token {server.legacy_token}"}
    r = httpx.post(f"{server.url}/api/tasks/{tasks['a']}/annotations/", headers=headers,
                   json={"result": [{**kept, "origin": "prediction"}, drawn],
                         "parent_prediction": prediction["id"]}, timeout=30)
    assert r.status_code == 201, r.text
    annotation = r.json()
    assert annotation["parent_prediction"] == prediction["id"]

    out = tmp_path / "out"
    r = _run(env, "export", "masks", "--project", str(project), "--out", str(out),
             "--format", "both")
    assert r.exit_code == 0, r.output
    rows = {row["region_id"]: row for row in _rows(out / "masks.csv")}
    assert set(rows) == {kept["id"], "hand1"}
    came = rows[kept["id"]]
    assert came["model_version"] == "sam2-t@1" and float(came["score"]) == 0.8
    assert came["prediction_id"] == str(prediction["id"]) and came["origin"] == "prediction"
    assert came["annotator"] == server.username
    assert rows["hand1"]["model_version"] == "" and rows["hand1"]["score"] == ""
    png, npy = came["file"].split(";")
    np.testing.assert_array_equal(np.asarray(Image.open(out / png).convert("L")),
                                  masks[("a", "Lesion")])
    np.testing.assert_array_equal(np.load(out / npy), masks[("a", "Lesion")])
    np.testing.assert_array_equal(np.load(out / rows["hand1"]["file"].split(";")[1]),
                                  masks[("a", "Ruler")])


# ------------------------------------------------------------------------------ dermatology

DATES = ["2026-01-10", "2026-04-02"]


@pytest.fixture(scope="module")
def derm_project(ls):
    _, client, env = ls
    ontology = load_ontology(Path("bootstrap/ontology/lesion_types.yaml"))
    labels = [t.value for t in ontology.lesion_types if not t.retired]
    project = client.projects.create(title="Exports derm",
                                     label_config=derm_lesion_tracking(ontology))
    tasks = [{"patient_id": p, "visits": ", ".join(DATES), "visit_dates": DATES,
              "images": [f"s3://derm-src/images/patients/{p}/{d}/face.jpg" for d in DATES]}
             for p in ("P1", "P2")]
    client.projects.import_tasks(id=project.id, request=tasks)
    ids = {t["data"]["patient_id"]: t["id"]
           for t in iter_project_tasks(env["LABEL_STUDIO_URL"], env["LABEL_STUDIO_API_KEY"],
                                       project.id)}
    return project.id, ids, labels


def test_yolo_predictions_and_lesion_export(ls, derm_project, tmp_path):
    server, client, env = ls
    project, ids, labels = derm_project
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(labels[:2]) + "\n")
    folder = tmp_path / "yolo"
    (folder / "P1" / DATES[0]).mkdir(parents=True)
    (folder / "P1" / DATES[1]).mkdir(parents=True)
    (folder / "P1" / DATES[0] / "face.txt").write_text("0 0.5 0.5 0.2 0.4 0.9\n")
    (folder / "P1" / DATES[1] / "face.txt").write_text("1 0.1 0.1 0.3 0.1 0.2 0.4 0.7\n")
    args = ("predictions", "import", "--project", str(project), "--yolo", str(folder),
            "--classes", str(classes), "--model-version", "yolo11n-derm@2")
    r = _run(env, *args)
    assert r.exit_code == 0, r.output
    r = _run(env, *args)
    assert r.exit_code == 0 and "1 unchanged" in r.output, r.output
    (prediction,) = _predictions(client, ids["P1"])
    assert not _predictions(client, ids["P2"])
    assert prediction["model_version"] == "yolo11n-derm@2"
    assert prediction["score"] == pytest.approx(0.8)
    box, poly = sorted(prediction["result"], key=lambda r: r["item_index"])
    assert box["type"] == "polygonlabels" and box["value"]["polygonlabels"] == [labels[0]]
    assert box["value"]["points"] == [[40.0, 30.0], [60.0, 30.0], [60.0, 70.0], [40.0, 70.0]]
    assert box["score"] == 0.9 and poly["score"] == 0.7 and poly["item_index"] == 1
    assert poly["value"]["points"] == [[10.0, 10.0], [30.0, 10.0], [20.0, 40.0]]

    # a class outside the ontology: named, nothing written
    (folder / "P1" / DATES[1] / "face.txt").write_text("5 0.5 0.5 0.1 0.1\n")
    r = _run(env, *args[:-1], "yolo11n-derm@3")
    assert r.exit_code == 2
    assert "face.txt:1 (task" in r.output and "class 5 is outside the class list" in r.output
    assert len(_predictions(client, ids["P1"])) == 1

    # the dermatologist outlines P1's lesion at both visits (from the prediction) with a track
    size = (1200, 900)
    result = []
    for index, region in enumerate((box, poly)):
        result.append({**region, "original_width": size[0], "original_height": size[1],
                       "origin": "prediction"})
        base = {"id": region["id"], "to_name": "images", "item_index": index}
        result += [{**base, "from_name": "track_id", "type": "number", "value": {"number": 4}},
                   {**base, "from_name": "status", "type": "choices",
                    "value": {"choices": ["new", "enlarged"][index:index + 1]}}]
    headers = {"Authorization": f"Token {server.legacy_token}"}
    r = httpx.post(f"{server.url}/api/tasks/{ids['P1']}/annotations/", headers=headers,
                   json={"result": result, "parent_prediction": prediction["id"],
                         "ground_truth": True}, timeout=30)
    assert r.status_code == 201, r.text
    out = tmp_path / "out"
    r = _run(env, "export", "lesions", "--project", str(project), "--out", str(out))
    assert r.exit_code == 0, r.output
    rows = _rows(out / "lesions.csv")
    assert [(row["patient_id"], row["track_id"], row["visit_index"], row["visit_date"],
             row["label"], row["status"]) for row in rows] == [
        ("P1", "4", "0", DATES[0], labels[0], "new"),
        ("P1", "4", "1", DATES[1], labels[1], "enlarged")]
    # box 20% x 40% of 1200 x 900 = 240 x 360 px; triangle of the polygon in pixels
    assert float(rows[0]["area_px"]) == pytest.approx(240 * 360)
    assert float(rows[1]["area_px"]) == pytest.approx(0.5 * 240 * 270)
    assert rows[0]["image"].endswith(f"P1/{DATES[0]}/face.jpg")
    assert rows[0]["annotator"] == server.username and rows[0]["ground_truth"] == "True"
    (track,) = _rows(out / "tracks.csv")
    assert (track["patient_id"], track["track_id"], track["visits"]) == ("P1", "4", "2")
    assert json.loads(track["statuses"]) == ["new", "enlarged"]
    assert float(track["area_change_px"]) == pytest.approx(0.5 * 240 * 270 - 240 * 360)
