"""End-to-end: `labelstack review` against a real Label Studio 1.23.2 (PostgreSQL, images in a
moto S3 bucket behind an import storage). Both shipped projects with their real label
configs, two annotators on a share of the tasks; the CLI runs as a subprocess.

Shows: the agreement fields land in task data (Data Manager columns), the "Review queue" view
holds exactly the tasks under the threshold, worst first; a re-run writes nothing; annotations
are never changed; marking an annotation as ground truth settles the task (who and when
recorded) and takes it out of the queue; the HTML report shows the images from Label Studio.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from bootstrap import label_configs as LC
from bootstrap.spec import MARKER_PREFIX
from tests.review_tasks import brush_region, lesion, rect, visit

pytestmark = pytest.mark.servers

REPO = Path(__file__).resolve().parent.parent
BUCKET = "labelstack-review-e2e"
H, W = 48, 64
IMAGE_RGB = (0, 200, 0)
SECOND = "second@labelstack.test"
SQ = [(10, 10), (30, 10), (30, 30), (10, 30)]
SQ_HALF = [(20, 10), (40, 10), (40, 30), (20, 30)]


@dataclass
class Env:
    url: str
    token: str
    http: httpx.Client
    users: dict[str, int]
    emails: dict[int, str]
    projects: dict[str, int]
    tasks: dict[str, dict[str, int]]  # project key -> case name -> task id
    out: Path

    def ids(self, *keys: str) -> list[str]:
        """``--project <id>`` for these spec keys (all by default): the shared server may hold
        other projects carrying the same managed keys (the bootstrap's tests)."""
        out = []
        for key in keys or tuple(self.projects):
            out += ["--project", str(self.projects[key])]
        return out

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
        env.update({"LABEL_STUDIO_URL": self.url, "LABEL_STUDIO_API_KEY": self.token,
                    "COLUMNS": "250", "NO_COLOR": "1"})
        return subprocess.run([sys.executable, "-m", "labelstack.cli", "review", *args],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)

    def task(self, task_id: int) -> dict:
        r = self.http.get(f"/api/tasks/{task_id}/", params={"resolve_uri": "false"})
        r.raise_for_status()
        return r.json()

    def annotations(self) -> dict[int, dict]:
        out = {}
        for pid in self.projects.values():
            for t in self.http.get(f"/api/projects/{pid}/export",
                                   params={"exportType": "JSON"}).json():
                for a in t["annotations"]:
                    out[a["id"]] = {k: a[k] for k in ("result", "updated_at", "ground_truth",
                                                      "completed_by", "was_cancelled")}
        return out

    def view_task_ids(self, key: str) -> list[int]:
        pid = self.projects[key]
        views = self.http.get("/api/dm/views/", params={"project": pid}).json()
        (view,) = [v for v in views if v["data"]["title"] == "Review queue"]
        r = self.http.get("/api/tasks/", params={"project": pid, "view": view["id"],
                                                 "page_size": 100, "fields": "all"})
        r.raise_for_status()
        return [t["id"] for t in r.json()["tasks"]]


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (W, H), IMAGE_RGB).save(buf, format="PNG")
    return buf.getvalue()


def _ann(result: list[dict], user: int) -> dict:
    # imported annotations are ground truth unless told otherwise (Label Studio 1.23 import)
    return {"result": result, "completed_by": user, "was_cancelled": False,
            "ground_truth": False}


def _sam2_tasks(u1: int, u2: int) -> dict[str, dict]:
    """name -> task: two agreeing, two disagreeing, one single-annotator."""
    sq = rect(H, W, 0, 20, 0, 20)
    near = rect(H, W, 0, 20, 0, 19)  # 380/400 = 0.95
    half = rect(H, W, 10, 30, 0, 20)  # IoU 1/3

    def t(i: int, *anns: dict) -> dict:
        return {"data": {"image": f"s3://{BUCKET}/images/{i}.png", "camera_id": f"cam-{i}",
                         "batch": "batch-001"}, "annotations": list(anns)}

    return {
        "same": t(1, _ann([brush_region(sq, "Lesion")], u1), _ann([brush_region(sq, "Lesion")],
                                                                   u2)),
        "near": t(2, _ann([brush_region(sq, "Lesion")], u1),
                  _ann([brush_region(near, "Lesion")], u2)),
        "half": t(3, _ann([brush_region(sq, "Lesion")], u1),
                  _ann([brush_region(half, "Lesion")], u2)),
        "other_label": t(4, _ann([brush_region(sq, "Lesion")], u1),
                         _ann([brush_region(sq, "Ruler")], u2)),
        "single": t(5, _ann([brush_region(sq, "Lesion")], u1)),
        "none": t(6),
    }


def _derm_tasks(u1: int, u2: int) -> dict[str, dict]:
    def t(patient: str, *anns: dict) -> dict:
        return {"data": {"patient_id": patient, "images": [
            f"s3://{BUCKET}/images/1.png", f"s3://{BUCKET}/images/2.png"],
            "visit_dates": ["2024-01-10", "2024-07-02"], "visits": "2024-01-10, 2024-07-02"},
            "annotations": list(anns)}

    def track1(status: str = "stable") -> list[dict]:
        return lesion(SQ, track=1, status=status, size=(W, H))

    def track2() -> list[dict]:
        return lesion(SQ_HALF, track=2, status="new", image=1, size=(W, H))

    both = [*track1(), visit(0, "no change")]
    return {
        "agree": t("P1", _ann(both, u1), _ann([*track1(), visit(0, "no change")], u2)),
        "extra_track": t("P2", _ann([*both, *track2()], u1),
                         _ann([*track1(), visit(0, "no change")], u2)),
        "status": t("P3", _ann([*track1(), *track2(), visit(0, "no change"),
                                visit(1, "progression")], u1),
                    _ann([*track1("enlarged"), *track2(), visit(0, "no change"),
                          visit(1, "improvement")], u2)),
        "single": t("P4", _ann(both, u1)),
    }


@pytest.fixture(scope="module")
def env(label_studio, s3_server, tmp_path_factory) -> Env:
    s3 = s3_server.client()
    s3.create_bucket(Bucket=BUCKET)
    for i in range(1, 7):
        s3.put_object(Bucket=BUCKET, Key=f"images/{i}.png", Body=_png())
    http = httpx.Client(base_url=label_studio.url, timeout=120,
                        headers={"Authorization": f"Token {label_studio.legacy_token}"})
    me = http.get("/api/current-user/whoami").json()
    r = http.post("/api/users/", json={"email": SECOND,
                                       "username": SECOND.split("@")[0], "first_name": "Second"})
    assert r.status_code in (200, 201), r.text
    users = {"admin": me["id"], "second": r.json()["id"]}
    emails = {me["id"]: me["email"], users["second"]: SECOND}
    ontology = LC.load_ontology(REPO / "bootstrap" / "ontology" / "lesion_types.yaml")
    configs = {"sam2-segmentation": LC.sam2_segmentation(["Lesion", "Ruler", "Marker ink"]),
               "derm-lesion-tracking": LC.derm_lesion_tracking(ontology)}
    builders = {"sam2-segmentation": _sam2_tasks, "derm-lesion-tracking": _derm_tasks}
    projects, tasks = {}, {}
    for key, xml in configs.items():
        r = http.post("/api/projects/", json={
            "title": f"review e2e {key}"[:50], "label_config": xml,
            "description": f"review e2e\n\n{MARKER_PREFIX}{key}", "maximum_annotations": 2})
        assert r.status_code == 201, r.text
        pid = projects[key] = r.json()["id"]
        r = http.post("/api/storages/s3/", json={
            "project": pid, "bucket": BUCKET, "prefix": "images/", "use_blob_urls": True,
            "presign": False, "title": "images"})
        assert r.status_code == 201, r.text
        cases = builders[key](users["admin"], users["second"])
        r = http.post(f"/api/projects/{pid}/import", json=list(cases.values()))
        assert r.status_code == 201, r.text
        ids = sorted(t["id"] for t in http.get(
            "/api/tasks/", params={"project": pid, "page_size": 100}).json()["tasks"])
        tasks[key] = dict(zip(cases, ids, strict=True))
    return Env(label_studio.url, label_studio.personal_access_token(), http, users, emails,
               projects, tasks, tmp_path_factory.mktemp("review-out"))


@pytest.fixture(scope="module")
def first(env: Env):
    before = env.annotations()
    data_before = {tid: env.task(tid)["data"] for cases in env.tasks.values()
                   for tid in cases.values()}
    run = env.cli(*env.ids(), "--out", str(env.out))
    return before, data_before, run


def test_first_run_writes_agreement_into_task_data(env: Env, first):
    _, data_before, run = first
    assert run.returncode == 0, run.stdout + run.stderr
    sam = env.tasks["sam2-segmentation"]
    half = env.task(sam["half"])["data"]
    assert half["review_state"] == "queue"
    assert half["review_agreement"] == pytest.approx(1 / 3, abs=1e-4)
    assert half["review_brush_iou_min"] == pytest.approx(1 / 3, abs=1e-4)
    assert half["review_reason"].startswith("brush_iou_min 0.33: label Lesion IoU 0.33")
    assert half["review_annotators"] == f"{env.emails[env.users['admin']]}, {SECOND}"
    near = env.task(sam["near"])["data"]
    assert (near["review_state"], near["review_agreement"]) == ("agreed", 0.95)
    # the task's own data is kept as stored (URI not resolved), only review_* keys added
    for tid in (sam["half"], sam["near"]):
        data = env.task(tid)["data"]
        assert {k: v for k, v in data.items() if not k.startswith("review_")} == \
            data_before[tid]
    for name in ("single", "none"):
        assert not any(k.startswith("review_") for k in env.task(sam[name])["data"])
    derm = env.tasks["derm-lesion-tracking"]
    extra = env.task(derm["extra_track"])["data"]
    assert extra["review_polygon_iou"] == pytest.approx(0.5)
    assert "track 2 on image 2 (visit 2024-07-02) drawn only by admin@labelstack.test" in \
        extra["review_reason"]
    status = env.task(derm["status"])["data"]
    assert status["review_state"] == "queue"
    assert "status_agreement" in status["review_reason"]
    assert "image 2 (visit 2024-07-02): progression" in status["review_reason"]
    assert env.task(derm["agree"])["data"]["review_state"] == "agreed"


def test_queue_view_holds_exactly_the_tasks_under_the_threshold_worst_first(env: Env, first):
    sam = env.tasks["sam2-segmentation"]
    # other_label: 0.0, half: 1/3
    assert env.view_task_ids("sam2-segmentation") == [sam["other_label"], sam["half"]]
    derm = env.tasks["derm-lesion-tracking"]
    assert sorted(env.view_task_ids("derm-lesion-tracking")) == sorted(
        [derm["extra_track"], derm["status"]])
    # the agreement column filters numerically in the Data Manager
    pid = env.projects["sam2-segmentation"]
    r = env.http.get("/api/tasks/", params={"project": pid, "query": json.dumps({
        "filters": {"conjunction": "and", "items": [{
            "filter": "filter:tasks:data.review_agreement", "operator": "greater",
            "type": "Number", "value": 0.9}]}})})
    assert sorted(t["id"] for t in r.json()["tasks"]) == sorted([sam["same"], sam["near"]])


def test_rerun_changes_nothing_and_annotations_are_untouched(env: Env, first):
    before, _, _ = first
    tasks_before = {tid: env.task(tid) for cases in env.tasks.values() for tid in
                    cases.values()}
    run = env.cli(*env.ids())
    assert run.returncode == 0, run.stdout + run.stderr
    text = " ".join(run.stdout.split())
    assert text.count("0 updated, 0 cleared") == 2, text
    assert "Review queue: unchanged" in text
    for tid, t in tasks_before.items():
        after = env.task(tid)
        assert (after["data"], after["updated_at"]) == (t["data"], t["updated_at"])
    assert env.annotations() == before


def test_ground_truth_settles_a_task_and_takes_it_out_of_the_queue(env: Env, first):
    sam = env.tasks["sam2-segmentation"]
    ann = env.task(sam["half"])["annotations"][1]
    r = env.http.patch(f"/api/annotations/{ann['id']}/", json={"ground_truth": True})
    assert r.status_code == 200, r.text
    run = env.cli(*env.ids("sam2-segmentation"))
    assert run.returncode == 0, run.stdout + run.stderr
    data = env.task(sam["half"])["data"]
    assert data["review_state"] == "settled"
    assert data["review_settled_by"] == env.emails[env.users["admin"]]
    assert data["review_settled_annotation"] == ann["id"]
    assert re.match(r"\d{4}-\d\d-\d\dT", data["review_settled_at"])
    assert env.view_task_ids("sam2-segmentation") == [sam["other_label"]]
    assert env.task(sam["half"])["annotations"][1]["result"] == ann["result"]


def test_report_and_csv_show_the_live_images(env: Env, first):
    rows = list(csv.DictReader((env.out / "agreement.csv").open()))
    sam = env.tasks["sam2-segmentation"]
    half = {r["metric"]: r for r in rows if r["task_id"] == str(sam["half"])}
    assert half["agreement"]["below"] == "true" and half["agreement"]["threshold"] == "0.8"
    assert float(half["brush_iou_mean"]["value"]) == pytest.approx(1 / 3, abs=1e-4)
    assert {r["project"] for r in rows} == {"sam2-segmentation", "derm-lesion-tracking"}
    html = (env.out / "report.html").read_text()
    assert "images are not fetched" not in html
    pngs = re.findall(r'alt="task (\d+)" src="data:image/png;base64,([^"]+)"', html)
    thumbs = {int(t): Image.open(io.BytesIO(base64.b64decode(b))).convert("RGB")
              for t, b in pngs}
    # bottom-right corner: no region there, so it is the image Label Studio served
    img = np.asarray(thumbs[sam["half"]])
    assert tuple(img[-2, -2]) == IMAGE_RGB
