"""What every export row says about its annotation: who, when, ground truth, provenance."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class ExportError(ValueError):
    """Bad content in a task, naming the task, the annotation or region and the field."""


def safe_name(value: object) -> str:
    """A file-name-safe form of an id (Label Studio region ids are short random strings)."""
    return _SAFE.sub("_", str(value))[:64] or "_"


def annotations(task: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The task's submitted annotations (skipped ones, ``was_cancelled``, are left out)."""
    for annotation in task.get("annotations") or []:
        if not annotation.get("was_cancelled"):
            yield annotation


def annotator(annotation: Mapping[str, Any], users: Mapping[int, str] | None = None) -> str:
    """The author's email when known (an expanded ``completed_by`` or the users map), else id."""
    by = annotation.get("completed_by")
    if isinstance(by, Mapping):
        return str(by.get("email") or by.get("id") or "")
    if by is None:
        return ""
    return (users or {}).get(int(by), str(by)) if str(by).isdigit() else str(by)


@dataclass(frozen=True)
class Provenance:
    """The prediction a region came from, when it came from one."""

    prediction_id: int | None = None
    model_version: str = ""
    score: float | None = None


def provenance(task: Mapping[str, Any], annotation: Mapping[str, Any]
               ) -> dict[str, Provenance]:
    """{region id: provenance} for the regions of ``annotation`` taken from a prediction.

    Label Studio records the prediction an annotation was started from as
    ``parent_prediction``; its regions keep their ids, and the result items carry ``origin``
    (``prediction``, ``prediction-changed`` or ``manual``). A region counts as coming from the
    prediction when its id is in the prediction's result and its origin is not ``manual``. The
    score is the region's own (``score`` of the prediction's result item), else the
    prediction's.
    """
    parent = annotation.get("parent_prediction")
    if parent is None:
        return {}
    prediction = next((p for p in task.get("predictions") or [] if p.get("id") == parent), None)
    if prediction is None:
        return {}
    scores = {item.get("id"): item.get("score") for item in prediction.get("result") or []}
    out = {}
    for item in annotation.get("result") or []:
        region = item.get("id")
        if region in scores and item.get("origin") != "manual":
            score = scores[region] if scores[region] is not None else prediction.get("score")
            out[region] = Provenance(parent, str(prediction.get("model_version") or ""),
                                     None if score is None else float(score))
    return out


def image_size(item: Mapping[str, Any], where: str) -> tuple[int, int]:
    """(width, height) in pixels of a result item's image (``original_width/height``)."""
    try:
        width, height = int(item["original_width"]), int(item["original_height"])
    except (KeyError, TypeError, ValueError):
        raise ExportError(f"{where}: field original_width/original_height is missing or not a "
                          "number: re-save the annotation in Label Studio so it records the "
                          "image size") from None
    if width <= 0 or height <= 0:
        raise ExportError(f"{where}: field original_width/original_height is {width}x{height}:"
                          " an image size must be positive")
    return width, height
