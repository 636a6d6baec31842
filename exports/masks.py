"""Brush masks as PNG / NumPy files with a provenance table (``masks.csv``).

One file per brush region of every submitted annotation, pixel-exact to the decoded RLE (the
alpha channel, as Label Studio's own ``BRUSH_TO_PNG``: 0 or 255 per pixel), under
``masks/task-<task>-annotation-<annotation>-region-<region>.png|npy`` (PNG: 1-bit grayscale
for 0/255 masks, read back as 0/255 with ``Image.open(p).convert("L")``). ``masks.csv`` has one
row per region: task_id, annotation_id, region_id, label, annotator, created_at, width,
height, pixels, file, model_version and score of the prediction the region came from (empty
when drawn by hand), prediction_id, origin, ground_truth.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exports.records import (
    ExportError,
    annotations,
    annotator,
    image_size,
    provenance,
    safe_name,
)
from exports.sink import Sink

COLUMNS = ("task_id", "annotation_id", "region_id", "label", "annotator", "created_at",
           "width", "height", "pixels", "file", "model_version", "score", "prediction_id",
           "origin", "ground_truth")
FORMATS = ("png", "npy", "both")


@dataclass
class MasksSummary:
    tasks: int = 0
    regions: int = 0
    files: list[str] = field(default_factory=list)


def brush_regions(task: Mapping[str, Any]):
    """(annotation, result item) for every RLE brush region of the task's annotations."""
    for annotation in annotations(task):
        for item in annotation.get("result") or []:
            if str(item.get("type", "")).lower() == "brushlabels":
                yield annotation, item


def decode_region(task_id: Any, annotation_id: Any, item: Mapping[str, Any]):
    """The region's H x W uint8 mask; ``ExportError`` naming the task and field when bad."""
    from backend.rle import rle_length, rle_to_mask

    where = f"task {task_id}, annotation {annotation_id}, region {item.get('id')}"
    width, height = image_size(item, where)
    value = item.get("value") or {}
    if value.get("format", "rle") != "rle" or not isinstance(value.get("rle"), list):
        raise ExportError(f"{where}: field value.rle is missing or not a list of bytes "
                          f"(format {value.get('format')!r}): only RLE brush masks export")
    try:
        length = rle_length(value["rle"])
        if length != width * height * 4:
            raise ExportError(
                f"{where}: field value.rle holds {length} values but original_width x "
                f"original_height x 4 = {width} x {height} x 4 = {width * height * 4}: the "
                "mask does not belong to an image of that size")
        return rle_to_mask(value["rle"], height, width, channel=3)  # alpha, as BRUSH_TO_PNG
    except ValueError as exc:
        if isinstance(exc, ExportError):
            raise
        raise ExportError(f"{where}: field value.rle cannot be decoded: {exc}") from None


def write_mask(sink: Sink, stem: str, mask, fmt: str) -> list[str]:
    """Write ``mask`` as ``stem.png`` and/or ``stem.npy``; returns the relative paths.

    A mask of 0 and 255 (every brush mask) is a 1-bit grayscale PNG, which every reader
    scales to 0/255 in 8 bits (PIL: ``Image.open(p).convert("L")``) and which writes eight
    times less data; any other mask is an 8-bit grayscale PNG. The ``.npy`` holds the uint8
    array itself.
    """
    import numpy as np
    from PIL import Image

    written = []
    if fmt in ("png", "both"):
        inside = mask != 0
        if (mask[inside] == 255).all():
            height, width = mask.shape
            image = Image.frombytes("1", (width, height), np.packbits(inside, axis=1).tobytes())
        else:
            image = Image.fromarray(mask, mode="L")
        image.save(sink.path(f"{stem}.png"), format="PNG", compress_level=1)
        written.append(f"{stem}.png")
    if fmt in ("npy", "both"):
        np.save(sink.path(f"{stem}.npy"), mask, allow_pickle=False)
        written.append(f"{stem}.npy")
    return written


def export_masks(tasks: Iterable[Mapping[str, Any]], sink: Sink, *, fmt: str = "png",
                 users: Mapping[int, str] | None = None,
                 advance: Callable[[int], None] | None = None) -> MasksSummary:
    """Write every brush region of ``tasks`` and ``masks.csv`` into ``sink`` (staged)."""
    import numpy as np

    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    summary = MasksSummary()
    with open(sink.path("masks.csv"), "w", newline="", encoding="utf-8") as handle:
        table = csv.writer(handle)
        table.writerow(COLUMNS)
        for task in tasks:
            task_id = task.get("id")
            origins = {}
            for annotation, item in brush_regions(task):
                annotation_id = annotation.get("id")
                if annotation_id not in origins:
                    origins = {annotation_id: provenance(task, annotation)}
                region = item.get("id")
                mask = decode_region(task_id, annotation_id, item)
                stem = (f"masks/task-{safe_name(task_id)}-annotation-{safe_name(annotation_id)}"
                        f"-region-{safe_name(region)}")
                files = write_mask(sink, stem, mask, fmt)
                came_from = origins[annotation_id].get(region)
                labels = (item.get("value") or {}).get("brushlabels") or []
                table.writerow([
                    task_id, annotation_id, region, ";".join(map(str, labels)),
                    annotator(annotation, users), annotation.get("created_at", ""),
                    mask.shape[1], mask.shape[0], int(np.count_nonzero(mask)),
                    ";".join(files),
                    came_from.model_version if came_from else "",
                    "" if came_from is None or came_from.score is None else came_from.score,
                    came_from.prediction_id if came_from else "",
                    item.get("origin", ""), bool(annotation.get("ground_truth")),
                ])
                summary.regions += 1
                summary.files += files
            summary.tasks += 1
            if advance:
                advance(1)
    return summary


def read_table(text: str) -> list[dict[str, str]]:
    """Rows of a ``masks.csv`` (or any export table) as dicts."""
    return list(csv.DictReader(io.StringIO(text)))
