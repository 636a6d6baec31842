"""labelstack export masks / lesions from export files: exact masks, pixel tables, tracks, S3."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from label_studio_sdk.converter import brush
from PIL import Image
from typer.testing import CliRunner

from backend.rle import mask2rle
from exports.lesions import percent_to_px, px_to_percent
from labelstack.cli import cli


def _blob(h: int, w: int, seed: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    rng = np.random.default_rng(seed)
    m = np.sin(xx / (4 + seed)) * np.cos(yy / (3 + seed)) > 0.3
    m ^= rng.random((h, w)) > 0.99
    return m.astype(np.uint8) * 255


def _brush(region: str, mask: np.ndarray, label: str, **extra) -> dict:
    h, w = mask.shape
    return {"id": region, "from_name": "mask", "to_name": "image", "type": "brushlabels",
            "original_width": w, "original_height": h, "image_rotation": 0,
            "value": {"format": "rle", "rle": mask2rle(mask), "brushlabels": [label]}, **extra}


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


MASKS = {("a1", 1): _blob(31, 47, 1), ("b2", 1): _blob(31, 47, 2), ("c3", 2): _blob(64, 33, 3)}


def _sam2_export(tmp_path: Path) -> Path:
    """Two tasks; task 1's annotation started from prediction 7 (region a1 kept, b2 drawn)."""
    tasks = [
        {"id": 1, "data": {"image": "s3://src/1.png"},
         "predictions": [{"id": 7, "model_version": "sam2-hiera-t@3", "score": 0.61,
                          "result": [_brush("a1", MASKS[("a1", 1)], "Lesion", score=0.93)]}],
         "annotations": [{"id": 11, "completed_by": {"id": 3, "email": "ann@example.org"},
                          "created_at": "2026-11-20T10:00:00Z", "ground_truth": True,
                          "parent_prediction": 7, "was_cancelled": False,
                          "result": [_brush("a1", MASKS[("a1", 1)], "Lesion",
                                            origin="prediction"),
                                     _brush("b2", MASKS[("b2", 1)], "Ruler", origin="manual")]},
                         {"id": 12, "completed_by": 4, "was_cancelled": True,
                          "result": [_brush("zz", MASKS[("a1", 1)], "Lesion")]}]},
        {"id": 2, "data": {"image": "s3://src/2.png"}, "predictions": [],
         "annotations": [{"id": 21, "completed_by": 5, "created_at": "2026-11-21T08:00:00Z",
                          "result": [_brush("c3", MASKS[("c3", 2)], "Marker ink"),
                                     {"id": "x", "type": "choices", "value": {}}]}]},
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    return path


def test_masks_round_trip_png_and_npy_with_provenance(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = _run("export", "masks", "--from-file", str(_sam2_export(tmp_path)), "--out", str(out),
             "--format", "both")
    assert r.exit_code == 0, r.output
    rows = {row["region_id"]: row for row in _rows(out / "masks.csv")}
    assert set(rows) == {"a1", "b2", "c3"}  # the skipped annotation 12 is left out
    for (region, task), mask in MASKS.items():
        row = rows[region]
        assert row["task_id"] == str(task)
        files = row["file"].split(";")
        png = np.asarray(Image.open(out / files[0]).convert("L"))
        npy = np.load(out / files[1])
        np.testing.assert_array_equal(png, mask)
        np.testing.assert_array_equal(npy, mask)
        # the same pixels as Label Studio's converter decodes (alpha channel)
        flat = brush.decode_rle(mask2rle(mask)).reshape(*mask.shape, 4)[:, :, 3]
        np.testing.assert_array_equal(png, flat)
        assert int(row["pixels"]) == int(np.count_nonzero(mask))
        assert (int(row["width"]), int(row["height"])) == (mask.shape[1], mask.shape[0])
    assert rows["a1"]["model_version"] == "sam2-hiera-t@3"
    assert float(rows["a1"]["score"]) == 0.93 and rows["a1"]["prediction_id"] == "7"
    assert rows["a1"]["annotator"] == "ann@example.org" and rows["a1"]["ground_truth"] == "True"
    assert rows["b2"]["model_version"] == "" and rows["b2"]["score"] == ""  # drawn by hand
    assert rows["c3"]["annotator"] == "5" and rows["c3"]["label"] == "Marker ink"
    assert not list(out.glob(".labelstack-partial-*"))


def test_bad_rle_length_names_task_and_field_and_writes_nothing(tmp_path: Path) -> None:
    export = _sam2_export(tmp_path)
    tasks = json.loads(export.read_text())
    tasks[1]["annotations"][0]["result"][0]["original_width"] = 34  # 64x33 mask said 64x34
    export.write_text(json.dumps(tasks))
    out = tmp_path / "out"
    r = _run("export", "masks", "--from-file", str(export), "--out", str(out))
    assert r.exit_code == 2
    assert "task 2, annotation 21, region c3: field value.rle holds 8448 values" in r.output
    assert "34 x 64 x 4" in r.output
    assert list(out.iterdir()) == []  # task 1's masks were staged, never published


def test_malformed_export_file_writes_nothing(tmp_path: Path) -> None:
    export = _sam2_export(tmp_path)
    text = export.read_text()
    export.write_text(text[: text.rindex('"id": 21') + 30])  # cut inside task 2
    out = tmp_path / "out"
    r = _run("export", "masks", "--from-file", str(export), "--out", str(out))
    assert r.exit_code == 2
    assert "task #2" in r.output and "after task id 1" in r.output
    assert list(out.iterdir()) == []


@pytest.mark.servers
def test_masks_to_s3_with_sse_kms(tmp_path: Path, s3_server, monkeypatch) -> None:
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    s3 = s3_server.client()
    s3.create_bucket(Bucket="annotations-exports")
    r = _run("export", "masks", "--from-file", str(_sam2_export(tmp_path)),
             "--out", "s3://annotations-exports/exports/masks", "--format", "npy")
    assert r.exit_code == 2 and "--kms-key-id" in r.output
    r = _run("export", "masks", "--from-file", str(_sam2_export(tmp_path)),
             "--out", "s3://annotations-exports/exports//masks", "--kms-key-id", "k")
    assert r.exit_code == 2 and "'//'" in r.output
    r = _run("export", "masks", "--from-file", str(_sam2_export(tmp_path)),
             "--out", "s3://annotations-exports/exports/masks/", "--format", "npy",
             "--kms-key-id", "alias/labelstack-annotations")
    assert r.exit_code == 0, r.output
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="annotations-exports")["Contents"])
    assert "exports/masks/masks.csv" in keys and len(keys) == 4
    assert not any("//" in k for k in keys)
    for key in keys:
        head = s3.head_object(Bucket="annotations-exports", Key=key)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"].endswith("alias/labelstack-annotations")
    body = s3.get_object(Bucket="annotations-exports",
                         Key="exports/masks/masks/task-2-annotation-21-region-c3.npy")["Body"]
    path = tmp_path / "c3.npy"
    path.write_bytes(body.read())
    np.testing.assert_array_equal(np.load(path), MASKS[("c3", 2)])


# ---------------------------------------------------------------------- dermatology lesions


def _poly(region: str, index: int, points_px, size, label: str) -> dict:
    w, h = size
    return {"id": region, "from_name": "lesion", "to_name": "images", "type": "polygonlabels",
            "item_index": index, "original_width": w, "original_height": h,
            "image_rotation": 0, "value": {"points": px_to_percent(points_px, w, h),
                                           "closed": True, "polygonlabels": [label]}}


def _extras(region: str, index: int, track: int, status: str, note: str = "") -> list[dict]:
    base = {"id": region, "to_name": "images", "item_index": index}
    out = [{**base, "from_name": "track_id", "type": "number", "value": {"number": track}},
           {**base, "from_name": "status", "type": "choices", "value": {"choices": [status]}}]
    if note:
        out.append({**base, "from_name": "region_note", "type": "textarea",
                    "value": {"text": [note]}})
    return out


def _square(x: float, y: float, side: float) -> list[list[float]]:
    return [[x, y], [x + side, y], [x + side, y + side], [x, y + side]]


SIZES = [(4000, 3000), (1024, 768), (2048, 1536)]


def _derm_export(tmp_path: Path) -> Path:
    """Patient P1, three visits: track 1 grows 20 -> 40 px side, track 2 appears at visit 2."""
    result = []
    for visit, side in enumerate((20, 30, 40)):
        result += [_poly(f"t1v{visit}", visit, _square(100, 200, side), SIZES[visit], "Nevus")]
        result += _extras(f"t1v{visit}", visit, 1, ("new", "stable", "enlarged")[visit],
                          "irregular border" if visit == 2 else "")
    result += [_poly("t2v1", 1, [[10, 10], [50, 10], [10, 40]], SIZES[1], "Melanoma")]
    result += _extras("t2v1", 1, 2, "new")
    result += [{"id": "va0", "from_name": "visit_assessment", "to_name": "images",
                "type": "choices", "item_index": 2, "value": {"choices": ["progression"]}}]
    other = [_poly("o1", 0, _square(0, 0, 10), SIZES[0], "Nevus"), *_extras("o1", 0, 9, "new")]
    task = {"id": 5, "data": {"patient_id": "P1", "images": [f"s3://src/P1/v{i}.jpg"
                                                             for i in range(3)],
                              "visit_dates": ["2026-01-10", "2026-04-02", "2026-09-30"]},
            "annotations": [
                {"id": 50, "completed_by": {"email": "derm@example.org"}, "ground_truth": True,
                 "created_at": "2026-10-01T00:00:00Z", "result": result},
                {"id": 51, "completed_by": 8, "created_at": "2026-10-05T00:00:00Z",
                 "result": other}],
            "predictions": []}
    path = tmp_path / "derm.json"
    path.write_text(json.dumps([task]))
    return path


def test_percent_px_round_trip() -> None:
    points = [[0.0, 0.0], [1023.5, 10.25], [512.0, 767.0]]
    for size in SIZES:
        back = percent_to_px(px_to_percent(points, *size), *size)
        np.testing.assert_allclose(back, points, rtol=0, atol=1e-9)
    assert percent_to_px([[50.0, 25.0]], 4000, 3000) == [[2000.0, 750.0]]


def test_lesions_rows_and_tracks_across_visits(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    r = _run("export", "lesions", "--from-file", str(_derm_export(tmp_path)), "--out", str(out))
    assert r.exit_code == 0, r.output
    rows = _rows(out / "lesions.csv")
    assert len(rows) == 5
    by_region = {row["region_id"]: row for row in rows}
    v2 = by_region["t1v2"]
    assert (v2["patient_id"], v2["track_id"], v2["visit_index"], v2["visit_date"]) == (
        "P1", "1", "2", "2026-09-30")
    assert v2["image"] == "s3://src/P1/v2.jpg" and v2["label"] == "Nevus"
    assert v2["status"] == "enlarged" and v2["note"] == "irregular border"
    assert v2["visit_assessment"] == "progression" and v2["ground_truth"] == "True"
    assert float(v2["area_px"]) == pytest.approx(1600.0)
    assert float(v2["perimeter_px"]) == pytest.approx(160.0)
    np.testing.assert_allclose(json.loads(v2["points_px"]), _square(100, 200, 40), atol=1e-3)
    assert float(by_region["t2v1"]["area_px"]) == pytest.approx(600.0)
    assert by_region["o1"]["annotator"] == "8" and by_region["o1"]["ground_truth"] == "False"
    table = pq.read_table(out / "lesions.parquet").to_pylist()
    assert [t["region_id"] for t in table] == [row["region_id"] for row in rows]
    assert table[2]["area_px"] == pytest.approx(1600.0)
    tracks = {(t["patient_id"], t["track_id"]): t for t in _rows(out / "tracks.csv")}
    assert set(tracks) == {("P1", "1"), ("P1", "2")}  # track 9 is in the other annotation
    t1 = tracks[("P1", "1")]
    assert t1["visits"] == "3" and t1["first_visit_date"] == "2026-01-10"
    assert t1["last_visit_date"] == "2026-09-30"
    assert float(t1["first_area_px"]) == 400.0 and float(t1["last_area_px"]) == 1600.0
    assert float(t1["area_change_px"]) == 1200.0 and float(t1["area_change_pct"]) == 300.0
    assert json.loads(t1["statuses"]) == ["new", "stable", "enlarged"]
    assert json.loads(tracks[("P1", "2")]["statuses"]) == ["new"]


def test_lesion_with_too_few_points_names_the_field(tmp_path: Path) -> None:
    export = _derm_export(tmp_path)
    tasks = json.loads(export.read_text())
    tasks[0]["annotations"][0]["result"][0]["value"]["points"] = [[1, 2], [3, 4]]
    export.write_text(json.dumps(tasks))
    out = tmp_path / "out"
    r = _run("export", "lesions", "--from-file", str(export), "--out", str(out))
    assert r.exit_code == 2
    assert "task 5, annotation 50, region t1v0: field value.points" in r.output
    assert list(out.iterdir()) == []


def test_help_ends_with_exit_codes() -> None:
    for args in (["export", "--help"], ["export", "masks", "--help"],
                 ["export", "lesions", "--help"], ["predictions", "import", "--help"]):
        r = _run(*args)
        assert r.exit_code == 0
        words = " ".join(r.output.split()[-40:])
        assert "Exit codes: 0 ok;" in words and words.endswith("Label Studio or S3 failed.")
