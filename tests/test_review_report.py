"""`labelstack review --from-file`: agreement.csv, the HTML report as headless Chromium shows it,
and the CLI's answers to bad input. The CLI runs as a subprocess (exit codes, messages)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from review.report import CANVAS, COLOURS, MASK_ALPHA
from tests.review_tasks import annotation, blob_pair, brush_region, lesion, rect, task, visit

REPO = Path(__file__).resolve().parent.parent
H, W = 120, 160


def export_tasks() -> list[dict]:
    """Eight brush tasks from full agreement to none, one single-annotator task, one with a
    broken RLE."""
    rng = np.random.default_rng(3)
    tasks = []
    for i, shift in enumerate((0, 1, 2, 4, 8, 14, 22, 40)):
        a, b = blob_pair(H, W, rng, shift)
        tasks.append(task(100 + i, annotation([brush_region(a, "Lesion")], 1),
                          annotation([brush_region(b, "Lesion")], 2)))
    tasks.append(task(200, annotation([brush_region(rect(H, W, 0, 9, 0, 9), "Lesion")], 1)))
    bad = brush_region(rect(H, W, 0, 9, 0, 9), "Lesion")
    bad["value"]["rle"] = bad["value"]["rle"][:8]
    tasks.append(task(300, annotation([bad], 1),
                      annotation([brush_region(rect(H, W, 0, 9, 0, 9), "Lesion")], 2)))
    return tasks


def derm_tasks() -> list[dict]:
    sq = [(10, 10), (40, 10), (40, 50), (10, 50)]
    moved = [(20, 15), (50, 15), (50, 55), (20, 55)]
    return [task(400, annotation([*lesion(sq, track=1, status="stable", size=(W, H)),
                                  *lesion(moved, track=2, status="new", size=(W, H)),
                                  visit(0, "no change")], 1),
                 annotation([*lesion(moved, track=1, status="enlarged", size=(W, H)),
                             visit(0, "progression")], 2),
                 data={"images": ["s3://b/p1/v1.png"], "visit_dates": ["2024-01-10"]})]


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
    env.update({"COLUMNS": "200", "NO_COLOR": "1"})
    return subprocess.run([sys.executable, "-m", "labelstack.cli", "review", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def text(r: subprocess.CompletedProcess) -> str:
    return " ".join((r.stdout + r.stderr).split())


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("review-report")
    export = root / "export.json"
    export.write_text(json.dumps(export_tasks()))
    out = root / "out"
    (out).mkdir()
    (out / "agreement.csv").write_text("stale\n")
    return out, cli("--from-file", str(export), "--project", "sam2-segmentation",
                    "--out", str(out))


def test_unreadable_task_is_reported_and_exits_one(report):
    _, run = report
    assert run.returncode == 1, text(run)
    assert "task 300 (sam2-segmentation): could not score: RLEError" in text(run)


def test_csv_rows_per_task_and_metric(report):
    out, _ = report
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp left
    rows = list(csv.DictReader((out / "agreement.csv").open()))
    assert list(rows[0]) == ["task_id", "project", "metric", "value", "annotators",
                             "threshold", "below"]
    by = {(r["task_id"], r["metric"]): r for r in rows}
    assert float(by["100", "brush_iou_min"]["value"]) == 1.0
    assert by["100", "agreement"]["below"] == "false"
    assert by["107", "agreement"]["below"] == "true"
    assert by["107", "agreement"]["annotators"] == "user 1;user 2"
    assert by["300", "error"]["below"] == "true"
    assert not any(r["task_id"] == "200" for r in rows)  # one annotator: not scored
    values = [float(by[f"10{i}", "agreement"]["value"]) for i in range(8)]
    assert values == sorted(values, reverse=True)  # further apart, lower IoU


def test_report_in_headless_chromium(report, tmp_path):
    from local_stack.screenshots import _driver

    out, _ = report
    html = (out / "report.html").read_text()
    assert "images are not fetched" in html
    driver = _driver()
    try:
        driver.set_window_size(1400, 1800)
        driver.get((out / "report.html").as_uri())
        assert driver.title == "Annotator agreement"
        loaded = driver.execute_script(
            "return [...document.images].map(i => i.complete && i.naturalWidth > 0)")
        hists = driver.execute_script("return document.querySelectorAll('.hist svg').length")
        captions = driver.execute_script(
            "return [...document.querySelectorAll('.task b:first-child')].map(b => b.textContent)")
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    # the eight scored tasks are drawn, worst first
    assert loaded and all(loaded) and len(loaded) == 8
    assert hists == 2  # brush_iou_mean, brush_iou_min
    assert captions[0] == "task 107"
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    for colour in COLOURS[:2]:  # each annotator's mask blended in its own colour is visible
        alpha = MASK_ALPHA / 255
        blended = np.round(np.array(colour) * alpha + np.array(CANVAS) * (1 - alpha))
        assert (np.abs(pixels - blended).sum(axis=1) <= 6).sum() > 500, colour


def test_polygons_and_kappa_from_a_dermatology_export(tmp_path):
    export = tmp_path / "derm.json"
    export.write_text(json.dumps(derm_tasks()))
    run = cli("--from-file", str(export), "--project", "derm-lesion-tracking",
              "--out", str(tmp_path / "o"))
    assert run.returncode == 0, text(run)
    rows = {r["metric"]: r for r in csv.DictReader((tmp_path / "o" / "agreement.csv").open())}
    assert set(rows) == {"polygon_iou", "status_agreement", "visit_assessment_agreement",
                         "agreement"}
    assert float(rows["agreement"]["value"]) == 0.0  # track 2 drawn by one annotator only


@pytest.mark.parametrize(("args", "says"), [
    (["--from-file", "nope.json"], "--from-file nope.json: no such file"),
    (["--from-file", "{export}", "--project", "typo"], "--project 'typo': not a spec key"),
    (["--from-file", "{garbage}"], "not a Label Studio JSON export"),
    (["--from-file", "{export}", "--threshold", "2"], "--threshold 2.0: give a value in"),
    ([], "--url: not given"),
])
def test_bad_input_exits_two_naming_the_field(tmp_path, args, says):
    export, garbage = tmp_path / "e.json", tmp_path / "g.json"
    export.write_text("[]")
    garbage.write_text("{not json")
    run = cli(*[a.format(export=export, garbage=garbage) for a in args])
    assert run.returncode == 2, text(run)
    assert says in text(run)


def test_help_ends_with_exit_codes():
    run = cli("--help")
    assert run.returncode == 0
    assert text(run).rstrip().endswith("3 Label Studio failed or refused.")
