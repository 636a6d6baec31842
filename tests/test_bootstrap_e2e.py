"""End-to-end: the bootstrap against a real Label Studio 1.23.2 on PostgreSQL (hardening env),
a real S3-compatible server (moto) with objects in its buckets and the real SAM2 backend
process. The CLI runs as a subprocess, so exit codes and output are the operator's.

Servers start once per session (tests/servers.py); the first apply runs once per module.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from PIL import Image

from bootstrap import label_configs as LC
from bootstrap import spec as S
from bootstrap.client import Server
from bootstrap.planner import Planner
from tests.backend_server import BACKEND_AUTH_ENV
from tests.servers import free_port

pytestmark = pytest.mark.servers

REPO = Path(__file__).resolve().parent.parent
SEG, DERM_B, ANN = "labelstack-e2e-seg", "labelstack-e2e-derm", "labelstack-e2e-ann"
DERM = {"P001": {"2023-01-10": ["back.png"], "2023-07-02": ["back.png"],
                 "2024-01-15": ["back.png"]},
        "P002": {"2023-05-05": ["arm-a.png", "arm-b.png"], "2024-05-06": ["arm-a.png",
                                                                         "arm-b.png"]},
        "P003": {"2024-02-29": ["face.png"]}}
SAM2_TASK_FILES = {
    "tasks/batch-001.json": [
        {"image": f"s3://{SEG}/images/cam1-0001.png", "camera_id": "cam-1",
         "captured_at": "2024-05-01T10:00:00Z", "batch": "batch-001"},
        {"image": f"s3://{SEG}/images/cam2-0001.png", "camera_id": "cam-2",
         "captured_at": "2024-05-01T10:05:00Z", "batch": "batch-001"}],
    "tasks/batch-002.json": [
        {"image": f"s3://{SEG}/images/cam1-0002.png", "camera_id": "cam-1",
         "captured_at": "2024-05-02T09:00:00Z", "batch": "batch-002"}],
}
WEBHOOK = "https://93.184.215.14/labelstack/events"  # public address: passes SSRF checks


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (seed * 40 % 255, 80, 120)).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class E2E:
    url: str
    legacy: str
    pat: str
    spec_dir: Path
    stack: Path
    s3: object
    backend_url: str
    first: subprocess.CompletedProcess
    aws_env: dict
    setup_calls_before: int = 0

    @property
    def spec(self) -> Path:
        return self.spec_dir / "projects.yaml"

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60,
                            headers={"Authorization": f"Token {self.legacy}"})

    def cli(self, *args: str, token: str | None = None, url: str | None = None,
            extra: dict | None = None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LABEL_STUDIO_", "AWS_"))}
        env.update(self.aws_env)
        env.update(BACKEND_AUTH_ENV)  # the backend's caller credentials, as in the Job's env
        env.update({"LABEL_STUDIO_URL": url or self.url, "SAM2_BACKEND_URL": self.backend_url,
                    "LABEL_STUDIO_API_KEY": self.pat if token is None else token,
                    "COLUMNS": "400", "NO_COLOR": "1", **(extra or {})})
        return subprocess.run([sys.executable, "-m", "bootstrap", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)

    def project(self, key: str) -> dict:
        with self.http() as c:
            ps = c.get("/api/projects/", params={"page_size": 1000}).json()["results"]
        found = [p for p in ps if S.marker_key(p["description"]) == key]
        assert len(found) == 1, [p["title"] for p in ps]
        return found[0]


def setup_calls(backend_url: str) -> int:
    return httpx.get(f"{backend_url}/health", timeout=10).json()["requests"]["setup"]


def text(r: subprocess.CompletedProcess) -> str:
    return " ".join((r.stdout + r.stderr).split())


def write_spec(dst: Path, raw: dict) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for sub in ("instructions", "ontology"):
        if not (dst / sub).exists():
            shutil.copytree(REPO / "bootstrap" / sub, dst / sub)
    (dst / "projects.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return dst / "projects.yaml"


@pytest.fixture(scope="module")
def e2e(label_studio, s3_server, sam2_backend, tmp_path_factory) -> E2E:
    s3 = s3_server.client()
    for b in (SEG, DERM_B, ANN):
        s3.create_bucket(Bucket=b)
    for i, (patient, visits) in enumerate(DERM.items()):
        for visit, files in visits.items():
            for f in files:
                s3.put_object(Bucket=DERM_B, Key=f"images/patients/{patient}/{visit}/{f}",
                              Body=png(i))
    for key, tasks in SAM2_TASK_FILES.items():
        s3.put_object(Bucket=SEG, Key=key, Body=json.dumps(tasks).encode())
        for t in tasks:
            s3.put_object(Bucket=SEG, Key=t["image"].split("/", 3)[3], Body=png(7))
    raw = yaml.safe_load((REPO / "bootstrap" / "projects.yaml").read_text())
    raw["projects"][0]["webhooks"] = [{"url": WEBHOOK, "actions": ["ANNOTATION_CREATED"],
                                       "is_active": False}]
    spec_dir = tmp_path_factory.mktemp("spec")
    write_spec(spec_dir, raw)
    stack = spec_dir / "stack.json"
    stack.write_text(json.dumps({"bucketNames": {"source-segmentation": SEG,
                                                 "source-dermatology": DERM_B,
                                                 "annotations": ANN}}))
    env = E2E(label_studio.url, label_studio.legacy_token,
              label_studio.personal_access_token(), spec_dir, stack, s3, sam2_backend.url,
              None, {**s3_server.env()})  # type: ignore[arg-type]
    env.setup_calls_before = setup_calls(sam2_backend.url)
    tasks = env.cli("tasks", "--bucket", DERM_B)
    assert tasks.returncode == 0, text(tasks)
    assert "3 patient task file(s) from 8 image(s): 3 written" in text(tasks)
    env.first = env.cli("apply", "--spec", str(env.spec), "--stack-outputs", str(stack))
    assert env.first.returncode == 0, text(env.first)
    return env


# ---------------------------------------------------------------- happy path
def test_both_projects_created_with_generated_configs(e2e):
    spec = S.load_spec(e2e.spec, env={"SAM2_BACKEND_URL": e2e.backend_url},
                       stack_outputs_file=e2e.stack)
    for p in spec.projects:
        if not p.enabled:  # the optional video project ships off: never created
            with e2e.http() as c:
                ps = c.get("/api/projects/", params={"page_size": 1000}).json()["results"]
            assert all(S.marker_key(x["description"]) != p.key for x in ps), p.key
            continue
        got = e2e.project(p.key)
        assert got["title"] == p.title
        # the server strips the trailing newline; otherwise the config is stored as sent
        assert got["label_config"].strip() == S.render_label_config(p, e2e.spec_dir).strip()
        assert got["expert_instruction"] == S.render_instructions(p, e2e.spec_dir)
        assert got["show_instruction"] is True
    derm = e2e.project("derm-lesion-tracking")
    assert derm["maximum_annotations"] == 2 and derm["overlap_cohort_percentage"] == 20


def test_video_variant_and_label_list_limits_accepted_by_server(e2e):
    onto = LC.load_ontology(REPO / "bootstrap" / "ontology" / "lesion_types.yaml")
    configs = [LC.derm_lesion_tracking(onto), LC.sam2_video(["Car", "Person"]),
               LC.sam2_segmentation([f"class {i} <&>" for i in range(9)])]
    with e2e.http() as c:
        for xml in configs:
            r = c.post("/api/projects/validate/", json={"label_config": xml})
            assert r.status_code in (200, 204), r.text
        broken = configs[-1].replace('toName="image"', 'toName="nope"', 1)
        assert c.post("/api/projects/validate/", json={"label_config": broken}).status_code == 400


def test_storages_synced_with_exact_task_counts(e2e):
    assert e2e.project("sam2-segmentation")["task_number"] == 3
    assert e2e.project("derm-lesion-tracking")["task_number"] == len(DERM)
    with e2e.http() as c:
        for key, title in (("sam2-segmentation", "sam2-tasks"),
                           ("derm-lesion-tracking", "derm-tasks")):
            pid = e2e.project(key)["id"]
            [st] = c.get("/api/storages/s3", params={"project": pid}).json()
            assert st["title"] == title and st["status"] == "completed"
            assert st["use_blob_urls"] is False and st["presign"] is False
            [ex] = c.get("/api/storages/export/s3", params={"project": pid}).json()
            assert ex["can_delete_objects"] is False
    assert "Storage syncs" in e2e.first.stdout


def test_multi_image_tasks_resolve_every_image(e2e):
    pid = e2e.project("derm-lesion-tracking")["id"]
    with e2e.http() as c:
        tasks = c.get("/api/tasks", params={"project": pid, "page_size": 100}).json()["tasks"]
        assert {t["data"]["patient_id"] for t in tasks} == set(DERM)
        for t in tasks:
            visits = DERM[t["data"]["patient_id"]]
            want_keys = [f"images/patients/{t['data']['patient_id']}/{v}/{f}"
                         for v in sorted(visits) for f in sorted(visits[v])]
            assert len(t["data"]["images"]) == len(want_keys)
            assert t["data"]["visit_dates"] == [k.split("/")[3] for k in want_keys]
            for url, key in zip(t["data"]["images"], want_keys, strict=True):
                assert not url.startswith("s3://"), "Label Studio did not rewrite the URI"
                r = c.get(url, follow_redirects=False)
                assert r.status_code == 200, (url, r.status_code)  # proxied, not presigned
                body = e2e.s3.get_object(Bucket=DERM_B, Key=key)["Body"].read()
                assert r.content == body


def test_sam2_metadata_is_filterable_and_view_created(e2e):
    pid = e2e.project("sam2-segmentation")["id"]
    with e2e.http() as c:
        views = c.get("/api/dm/views/", params={"project": pid}).json()
        # Label Studio lists tabs by `order`: every task first, then the batch
        assert [v["data"]["title"] for v in views] == ["All tasks", "Batch 1"]
        assert [v["order"] for v in views] == [0, 1]
        everything = c.get("/api/tasks", params={"view": views[0]["id"], "project": pid})
        assert everything.json()["total"] == e2e.project("sam2-segmentation")["task_number"]
        view = views[1]
        tasks = c.get("/api/tasks", params={"view": view["id"], "project": pid}).json()
        assert sorted(t["data"]["camera_id"] for t in tasks["tasks"]) == ["cam-1", "cam-2"]


def test_ml_backend_registered_against_live_backend(e2e):
    pid = e2e.project("sam2-segmentation")["id"]
    with e2e.http() as c:
        [ml] = c.get("/api/ml/", params={"project": pid}).json()
    assert ml["url"] == e2e.backend_url and ml["is_interactive"] is True
    assert ml["state"] == "CO"  # Label Studio's health + setup succeeded
    # with the backend's caller credentials (the backend refuses callers without them)
    assert ml["auth_method"] == "BASIC_AUTH"
    assert ml["basic_auth_user"] == BACKEND_AUTH_ENV["SAM2_BASIC_AUTH_USER"]
    health = httpx.get(f"{e2e.backend_url}/health", timeout=10).json()
    assert health["status"] == "UP"
    assert setup_calls(e2e.backend_url) > e2e.setup_calls_before  # Label Studio called /setup
    # Label Studio's SSRF guard refuses its own auto-created training webhook to a private
    # address after saving the backend: the bootstrap accepts that and says so
    assert "refused the automatic training webhook" in text(e2e.first)


def test_webhook_created(e2e):
    pid = e2e.project("sam2-segmentation")["id"]
    with e2e.http() as c:
        hooks = {h["url"]: h for h in c.get("/api/webhooks/", params={"project": pid}).json()}
    assert hooks[WEBHOOK]["actions"] == ["ANNOTATION_CREATED"]
    assert hooks[WEBHOOK]["is_active"] is False


def test_second_apply_no_changes_zero_writes(e2e):
    spec = S.load_spec(e2e.spec, env={"SAM2_BACKEND_URL": e2e.backend_url},
                       stack_outputs_file=e2e.stack)
    srv = Server(e2e.url, e2e.pat)
    try:
        planner = Planner(srv, spec, e2e.spec_dir)
        plan = planner.plan()
        assert plan.empty, [(c.target, c.action, c.fields) for c in plan.changes]
        planner.apply(plan)
        assert srv.log.requests, "the counter saw nothing: it is not wired"
        assert srv.log.writes == []
    finally:
        srv.close()
    r = e2e.cli("apply", "--spec", str(e2e.spec), "--stack-outputs", str(e2e.stack))
    assert r.returncode == 0, text(r)
    assert "No changes." in r.stdout and "0 write request(s)" in text(r)


def test_drift_is_corrected_then_converges(e2e):
    derm = e2e.project("derm-lesion-tracking")
    with e2e.http() as c:
        c.patch(f"/api/projects/{derm['id']}/", json={"title": "renamed in the UI",
                                                      "maximum_annotations": 5})
    r = e2e.cli("apply", "--spec", str(e2e.spec), "--stack-outputs", str(e2e.stack))
    assert r.returncode == 0, text(r)
    assert "title: renamed in the UI -> Dermatology lesion tracking" in text(r)
    assert "maximum_annotations: 5 -> 2" in text(r)
    assert "1 change(s)" in text(r) and "1 write request(s)" in text(r)
    again = e2e.project("derm-lesion-tracking")
    assert again["title"] == "Dermatology lesion tracking" and again["id"] == derm["id"]
    assert again["maximum_annotations"] == 2
    r = e2e.cli("plan", "--spec", str(e2e.spec), "--stack-outputs", str(e2e.stack))
    assert "No changes." in r.stdout


def test_matched_by_marker_not_title_and_nothing_deleted(e2e):
    with e2e.http() as c:
        decoy = c.post("/api/projects/", json={"title": "SAM2 precision segmentation",
                                                "description": "hand-made"}).json()
        pid = e2e.project("sam2-segmentation")["id"]
        manual = c.post("/api/dm/views/", json={"project": pid, "data": {
            "title": "my own tab", "filters": {"conjunction": "and", "items": []}}}).json()
    before = e2e.project("sam2-segmentation")["task_number"]
    r = e2e.cli("apply", "--spec", str(e2e.spec), "--stack-outputs", str(e2e.stack))
    assert r.returncode == 0, text(r)
    assert "not in spec: left alone" in text(r) and "0 write request(s)" in text(r)
    with e2e.http() as c:
        assert c.get(f"/api/projects/{decoy['id']}/").status_code == 200
        assert c.get(f"/api/dm/views/{manual['id']}/").status_code == 200
        assert c.get(f"/api/projects/{decoy['id']}/").json()["description"] == "hand-made"
    assert e2e.project("sam2-segmentation")["task_number"] == before


def test_incompatible_label_change_refused(e2e, tmp_path):
    derm = e2e.project("derm-lesion-tracking")
    with e2e.http() as c:
        task = c.get("/api/tasks", params={"project": derm["id"]}).json()["tasks"][0]
        ann = c.post(f"/api/tasks/{task['id']}/annotations/", json={"result": [{
            "id": "r1", "from_name": "lesion", "to_name": "images", "type": "polygonlabels",
            "item_index": 0, "original_width": 64, "original_height": 48,
            "value": {"points": [[10, 10], [30, 10], [20, 30]],
                      "polygonlabels": ["Dermatofibroma"]}}]})
        assert ann.status_code == 201, ann.text
    raw = yaml.safe_load(e2e.spec.read_text())
    spec = write_spec(tmp_path, raw)
    onto = yaml.safe_load((tmp_path / "ontology" / "lesion_types.yaml").read_text())
    onto["lesion_types"] = [t for t in onto["lesion_types"] if t["value"] != "Dermatofibroma"]
    (tmp_path / "ontology" / "lesion_types.yaml").write_text(yaml.safe_dump(onto))
    r = e2e.cli("apply", "--spec", str(spec), "--stack-outputs", str(e2e.stack))
    assert r.returncode == 4, text(r)
    assert "orphan existing annotations" in text(r)
    assert "label 'Dermatofibroma' of lesion is used in 1 annotation(s)" in text(r)
    after = e2e.project("derm-lesion-tracking")
    assert after["label_config"] == derm["label_config"]
    assert after["total_annotations_number"] == derm["total_annotations_number"] + 1
    # adding a label is compatible and goes through; removing it again is fine (unused)
    onto["lesion_types"] = [*yaml.safe_load((REPO / "bootstrap/ontology/lesion_types.yaml")
                                            .read_text())["lesion_types"], {"value": "Scar"}]
    (tmp_path / "ontology" / "lesion_types.yaml").write_text(yaml.safe_dump(onto))
    r = e2e.cli("apply", "--spec", str(spec), "--stack-outputs", str(e2e.stack))
    assert r.returncode == 0, text(r)
    assert "Scar" in e2e.project("derm-lesion-tracking")["label_config"]
    r = e2e.cli("apply", "--spec", str(e2e.spec), "--stack-outputs", str(e2e.stack))
    assert r.returncode == 0, text(r)


# ---------------------------------------------------------------- auth
def test_legacy_token_and_pat_work_and_are_never_printed(e2e, tmp_path):
    for token, kind in ((e2e.legacy, "legacy token"), (e2e.pat, "personal access token")):
        r = e2e.cli("status", "--spec", str(e2e.spec), "--stack-outputs", str(e2e.stack),
                    token=token)
        assert r.returncode == 0, text(r)
        assert kind in r.stderr and "sam2-segmentation" in r.stdout
        assert token not in r.stdout + r.stderr
    f = tmp_path / "token"
    f.write_text(e2e.pat + "\n")
    r = e2e.cli("plan", "--spec", str(e2e.spec), "--stack-outputs", str(e2e.stack),
                "--token-file", str(f), token="")
    assert r.returncode == 0 and "No changes." in r.stdout, text(r)


@pytest.mark.parametrize("bad", ["0123456789abcdef0123456789abcdef01234567",
                                 "eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.c2lnbmF0dXJl"])
def test_wrong_token(e2e, bad):
    r = e2e.cli("plan", "--spec", str(e2e.spec), "--stack-outputs", str(e2e.stack), token=bad)
    assert r.returncode == 3, text(r)
    assert "rejected the API key" in text(r)
    assert bad not in r.stdout + r.stderr


def test_unreachable_server(e2e):
    r = e2e.cli("plan", "--spec", str(e2e.spec), "--stack-outputs", str(e2e.stack),
                url=f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 3 and "cannot reach Label Studio" in text(r), text(r)


def test_entrypoint_waits_then_applies(e2e):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
    env.update(BACKEND_AUTH_ENV)
    env.update({"LABEL_STUDIO_API_KEY": e2e.pat, "BOOTSTRAP_SPEC": str(e2e.spec),
                "SAM2_BACKEND_URL": e2e.backend_url,
                "LABELSTACK_STACK_OUTPUTS": str(e2e.stack), "COLUMNS": "400"})
    down = subprocess.run([sys.executable, "-m", "bootstrap.entrypoint"], cwd=REPO,
                          env={**env, "LABEL_STUDIO_URL": f"http://127.0.0.1:{free_port()}",
                               "BOOTSTRAP_WAIT_SECONDS": "2"},
                          capture_output=True, text=True, timeout=120)
    assert down.returncode == 3 and "not healthy after" in text(down), text(down)
    up = subprocess.run([sys.executable, "-m", "bootstrap.entrypoint"], cwd=REPO,
                        env={**env, "LABEL_STUDIO_URL": e2e.url}, capture_output=True,
                        text=True, timeout=300)
    assert up.returncode == 0, text(up)
    assert "bootstrap done: 0 write request(s)" in text(up)
    wrong = subprocess.run([sys.executable, "-m", "bootstrap.entrypoint"], cwd=REPO,
                           env={**env, "LABEL_STUDIO_URL": e2e.url,
                                "LABEL_STUDIO_API_KEY": "0" * 40,
                                "BOOTSTRAP_RETRY_SECONDS": "600"},
                           capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 3 and "rejected the API key" in text(wrong), text(wrong)
    assert "attempt 1/" not in text(wrong)  # not retried: a wrong key stays wrong


# ---------------------------------------------------------------- bad input, then the fix
def one_project(key: str, **fields) -> dict:
    base = {"key": key, "title": f"e2e {key}",
            "label_config": {"template": "sam2_segmentation", "labels": ["Thing"]}}
    return {"version": 1, "projects": [{**base, **fields}]}


def test_invalid_label_xml_then_fixed(e2e, tmp_path):
    cfg = tmp_path / "config.xml"
    cfg.write_text("<View><Image name='image' value='$image'/>"
                   "<RectangleLabels name='box' toName='img'><Label value='a'/>"
                   "</RectangleLabels></View>")
    spec = write_spec(tmp_path, one_project("bad-xml", label_config={"file": "config.xml"}))
    r = e2e.cli("apply", "--spec", str(spec))
    assert r.returncode == 3, text(r)
    assert "label config of project bad-xml rejected" in text(r) and "img" in text(r)
    cfg.write_text("<View><Image name='image' value='$image'")
    r = e2e.cli("apply", "--spec", str(spec))
    assert r.returncode == 2 and "not well-formed XML" in text(r), text(r)
    cfg.write_text(cfg.read_text() + "/><RectangleLabels name='box' toName='image'>"
                   "<Label value='a'/></RectangleLabels></View>")
    r = e2e.cli("apply", "--spec", str(spec))
    assert r.returncode == 0, text(r)
    assert e2e.cli("plan", "--spec", str(spec)).stdout.count("No changes.") == 1


def test_missing_bucket_then_fixed(e2e, tmp_path):
    storage = {"title": "imgs", "bucket": "labelstack-e2e-late", "prefix": "imgs/",
               "task_format": "object_per_task"}
    spec = write_spec(tmp_path, one_project("missing-bucket", import_storage=[storage]))
    r = e2e.cli("apply", "--spec", str(spec))
    assert r.returncode == 3, text(r)
    assert "Cannot find bucket labelstack-e2e-late" in text(r)
    assert "Fix: make sure bucket 'labelstack-e2e-late' exists" in text(r)
    e2e.s3.create_bucket(Bucket="labelstack-e2e-late")
    for i in range(4):
        e2e.s3.put_object(Bucket="labelstack-e2e-late", Key=f"imgs/{i}.png", Body=png(i))
    r = e2e.cli("apply", "--spec", str(spec))
    assert r.returncode == 0, text(r)
    assert e2e.project("missing-bucket")["task_number"] == 4  # one object, one task
    again = e2e.cli("apply", "--spec", str(spec))
    assert "No changes." in again.stdout and "0 write request(s)" in text(again)


def test_empty_prefix_then_fixed(e2e, tmp_path):
    storage = {"title": "later", "bucket": SEG, "prefix": "not-yet/",
               "task_format": "json_task_files"}
    spec = write_spec(tmp_path, one_project("empty-prefix", import_storage=[storage]))
    r = e2e.cli("apply", "--spec", str(spec))
    assert r.returncode == 3, text(r)
    assert f"s3://{SEG}/not-yet/ not found" in text(r) and "under prefix" in text(r)
    e2e.s3.put_object(Bucket=SEG, Key="not-yet/t.json", Body=json.dumps(
        [{"image": f"s3://{SEG}/images/cam1-0001.png"}] * 2).encode())
    r = e2e.cli("apply", "--spec", str(spec))
    assert r.returncode == 0, text(r)
    assert e2e.project("empty-prefix")["task_number"] == 2


def test_ml_backend_down_then_fixed(e2e, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    spec = write_spec(tmp_path, one_project("ml-down", ml_backend={"url": dead}))
    r = e2e.cli("apply", "--spec", str(spec))
    assert r.returncode == 3, text(r)
    assert f"Can't connect to ML backend {dead}" in text(r) and "start the ML backend" in text(r)
    assert "<a href" not in text(r)
    spec = write_spec(tmp_path, one_project("ml-down", ml_backend={
        "url": e2e.backend_url, "auth": "basic", "basic_auth_user_env": "SAM2_BASIC_AUTH_USER",
        "basic_auth_password_env": "SAM2_BASIC_AUTH_PASS"}))
    r = e2e.cli("apply", "--spec", str(spec))
    assert r.returncode == 0, text(r)
    with e2e.http() as c:
        mls = c.get("/api/ml/", params={"project": e2e.project("ml-down")["id"]}).json()
    assert [m["url"] for m in mls] == [e2e.backend_url]
