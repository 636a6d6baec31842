"""Dermatology lesion tables in pixels: ``lesions.csv`` / ``lesions.parquet`` and ``tracks.csv``.

Tag names and task data keys are those of ``bootstrap.label_configs.derm_lesion_tracking`` and
``bootstrap.tasks``: polygons ``lesion`` on the image list ``images``; per region ``track_id``
(Number), ``status`` (Choices) and ``region_note`` (TextArea), joined to their polygon by the
region id; per image ``visit_assessment``; task data ``patient_id``, ``images`` and
``visit_dates`` (one date per image, in visit order). A polygon's image is its ``item_index``.

Label Studio stores points in percent of the image; pixels are ``percent x original size /
100`` (``original_width`` / ``original_height`` of the result). Area and perimeter come from
shapely.

``tracks.csv`` joins each lesion's ``track_id`` across visits: one row per patient and track,
from one annotation per task (the ground-truth one, else the latest), visits ordered by date.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from exports.records import ExportError, annotations, annotator, image_size
from exports.sink import Sink

POLYGON_TAG, TRACK_TAG, STATUS_TAG, NOTE_TAG = "lesion", "track_id", "status", "region_note"
VISIT_TAG = "visit_assessment"
COLUMNS = ("patient_id", "track_id", "visit_index", "visit_date", "image", "label", "status",
           "note", "area_px", "perimeter_px", "points_px", "annotation_id", "annotator",
           "ground_truth", "task_id", "region_id", "visit_assessment")
TRACK_COLUMNS = ("patient_id", "track_id", "label", "visits", "first_visit_index",
                 "first_visit_date", "last_visit_index", "last_visit_date", "first_area_px",
                 "last_area_px", "area_change_px", "area_change_pct", "statuses",
                 "visit_dates", "areas_px", "task_ids", "annotation_ids")
_PARQUET_BATCH = 2000


def percent_to_px(points: list[list[float]], width: int, height: int) -> list[list[float]]:
    """Label Studio polygon points (percent of the image) in pixels."""
    return [[float(x) * width / 100.0, float(y) * height / 100.0] for x, y in points]


def px_to_percent(points: list[list[float]], width: int, height: int) -> list[list[float]]:
    """Pixel points in percent of the image, as Label Studio stores them."""
    return [[float(x) * 100.0 / width, float(y) * 100.0 / height] for x, y in points]


def _region_fields(result: list[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """{region id: {track_id, status, note}} from the per-region controls."""
    fields: dict[str, dict[str, Any]] = {}
    for item in result:
        name, value = item.get("from_name"), item.get("value") or {}
        entry = fields.setdefault(item.get("id"), {})
        if name == TRACK_TAG and "number" in value:
            entry["track_id"] = value["number"]
        elif name == STATUS_TAG and value.get("choices"):
            entry["status"] = ";".join(value["choices"])
        elif name == NOTE_TAG and value.get("text"):
            text = value["text"]
            entry["note"] = "\n".join(text) if isinstance(text, list) else str(text)
    return fields


def _visit_assessments(result: list[Mapping[str, Any]]) -> dict[int, str]:
    return {int(item.get("item_index") or 0): ";".join((item.get("value") or {}).get("choices")
                                                      or [])
            for item in result if item.get("from_name") == VISIT_TAG}


def _track_id(value: Any) -> int | str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return int(number) if number.is_integer() else number


def lesion_rows(task: Mapping[str, Any], users: Mapping[int, str] | None = None):
    """Rows (dicts with COLUMNS) for every polygon of every submitted annotation of a task."""
    from shapely.geometry import Polygon

    data = task.get("data") or {}
    images = data.get("images") or []
    dates = data.get("visit_dates") or []
    for annotation in annotations(task):
        result = annotation.get("result") or []
        fields = _region_fields(result)
        assessed = _visit_assessments(result)
        for item in result:
            if item.get("type") != "polygonlabels" or item.get("from_name") != POLYGON_TAG:
                continue
            where = (f"task {task.get('id')}, annotation {annotation.get('id')}, "
                     f"region {item.get('id')}")
            width, height = image_size(item, where)
            points = (item.get("value") or {}).get("points")
            if not isinstance(points, list) or len(points) < 3:
                raise ExportError(f"{where}: field value.points needs at least 3 [x, y] points "
                                  f"in percent, got {points!r:.80}")
            try:
                px = percent_to_px(points, width, height)
            except (TypeError, ValueError):
                raise ExportError(f"{where}: field value.points must be [x, y] number pairs, "
                                  f"got {points!r:.80}") from None
            shape = Polygon(px)
            index = int(item.get("item_index") or 0)
            extra = fields.get(item.get("id"), {})
            yield {
                "patient_id": data.get("patient_id", ""),
                "track_id": _track_id(extra["track_id"]) if "track_id" in extra else "",
                "visit_index": index,
                "visit_date": dates[index] if index < len(dates) else "",
                "image": images[index] if index < len(images) else "",
                "label": ";".join((item.get("value") or {}).get("polygonlabels") or []),
                "status": extra.get("status", ""),
                "note": extra.get("note", ""),
                "area_px": float(shape.area),
                "perimeter_px": float(shape.length),
                "points_px": json.dumps([[round(x, 3), round(y, 3)] for x, y in px]),
                "annotation_id": annotation.get("id"),
                "annotator": annotator(annotation, users),
                "ground_truth": bool(annotation.get("ground_truth")),
                "task_id": task.get("id"),
                "region_id": item.get("id"),
                "visit_assessment": assessed.get(index, ""),
            }


def tracked_annotation(task: Mapping[str, Any]) -> Any:
    """The id of the annotation whose tracks count: the ground-truth one, else the latest."""
    candidates = list(annotations(task))
    if not candidates:
        return None
    best = max(candidates, key=lambda a: (bool(a.get("ground_truth")),
                                          str(a.get("updated_at") or a.get("created_at") or ""),
                                          int(a.get("id") or 0)))
    return best.get("id")


class Tracks:
    """Each (patient, track) across visits, folded row by row (one small entry per track)."""

    def __init__(self) -> None:
        self.visits: dict[tuple[str, Any], dict[tuple[str, int], dict[str, Any]]] = {}

    def add(self, row: Mapping[str, Any]) -> None:
        if row["track_id"] == "":
            return
        key = (str(row["patient_id"]), row["track_id"])
        visit = (str(row["visit_date"]), int(row["visit_index"]))
        entry = self.visits.setdefault(key, {}).setdefault(
            visit, {"area": 0.0, "statuses": [], "labels": [], "tasks": set(),
                    "annotations": set()})
        entry["area"] += row["area_px"]  # several outlines of one lesion on one image add up
        entry["statuses"].append(row["status"])
        entry["labels"].append(row["label"])
        entry["tasks"].add(row["task_id"])
        entry["annotations"].add(row["annotation_id"])

    def rows(self):
        for (patient, track), visits in sorted(self.visits.items(),
                                               key=lambda kv: (kv[0][0], str(kv[0][1]))):
            order = sorted(visits)
            first, last = visits[order[0]], visits[order[-1]]
            change = last["area"] - first["area"]
            yield {
                "patient_id": patient, "track_id": track,
                "label": last["labels"][-1],
                "visits": len(order),
                "first_visit_index": order[0][1], "first_visit_date": order[0][0],
                "last_visit_index": order[-1][1], "last_visit_date": order[-1][0],
                "first_area_px": round(first["area"], 3), "last_area_px": round(last["area"], 3),
                "area_change_px": round(change, 3),
                "area_change_pct": (round(100.0 * change / first["area"], 3)
                                    if first["area"] else ""),
                "statuses": json.dumps([";".join(s for s in visits[v]["statuses"] if s)
                                        for v in order]),
                "visit_dates": json.dumps([v[0] for v in order]),
                "areas_px": json.dumps([round(visits[v]["area"], 3) for v in order]),
                "task_ids": json.dumps(sorted({t for v in order for t in visits[v]["tasks"]})),
                "annotation_ids": json.dumps(sorted({a for v in order
                                                     for a in visits[v]["annotations"]})),
            }


@dataclass
class LesionsSummary:
    tasks: int = 0
    lesions: int = 0
    tracks: int = 0


def _parquet_schema():
    import pyarrow as pa

    text = pa.string()
    return pa.schema([
        ("patient_id", text), ("track_id", text), ("visit_index", pa.int32()),
        ("visit_date", text), ("image", text), ("label", text), ("status", text),
        ("note", text), ("area_px", pa.float64()), ("perimeter_px", pa.float64()),
        ("points_px", text), ("annotation_id", pa.int64()), ("annotator", text),
        ("ground_truth", pa.bool_()), ("task_id", pa.int64()), ("region_id", text),
        ("visit_assessment", text)])


def export_lesions(tasks: Iterable[Mapping[str, Any]], sink: Sink, *,
                   users: Mapping[int, str] | None = None,
                   advance: Callable[[int], None] | None = None) -> LesionsSummary:
    """Write ``lesions.csv``, ``lesions.parquet`` and ``tracks.csv`` into ``sink`` (staged)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema()
    summary, tracks, batch = LesionsSummary(), Tracks(), []

    def flush(writer) -> None:
        columns = {name: [row[name] for row in batch] for name in schema.names}
        columns["track_id"] = [str(t) for t in columns["track_id"]]
        writer.write_table(pa.table(columns, schema=schema))
        batch.clear()

    with open(sink.path("lesions.csv"), "w", newline="", encoding="utf-8") as handle, \
            pq.ParquetWriter(sink.path("lesions.parquet"), schema) as parquet:
        table = csv.DictWriter(handle, fieldnames=COLUMNS)
        table.writeheader()
        for task in tasks:
            tracked = tracked_annotation(task)
            for row in lesion_rows(task, users):
                table.writerow(row)
                batch.append(row)
                if row["annotation_id"] == tracked:
                    tracks.add(row)
                summary.lesions += 1
                if len(batch) >= _PARQUET_BATCH:
                    flush(parquet)
            summary.tasks += 1
            if advance:
                advance(1)
        if batch or not summary.lesions:
            flush(parquet)
    with open(sink.path("tracks.csv"), "w", newline="", encoding="utf-8") as handle:
        table = csv.DictWriter(handle, fieldnames=TRACK_COLUMNS)
        table.writeheader()
        for row in tracks.rows():
            table.writerow(row)
            summary.tracks += 1
    return summary
