"""Agreement of one task's annotations: what each metric measures and why a task scores low.

Metrics (each in [0, 1] for IoU, [-1, 1] for chance-corrected agreement):

* ``brush_iou_mean`` / ``brush_iou_min``: IoU of each label's brush mask between every pair of
  annotators (a label only one of them used scores 0); mean and minimum over pairs x labels.
* ``polygon_iou``: polygons matched by ``(image, track id)``; per track the mean pairwise IoU,
  a track drawn by only some annotators scoring 0 against the others; mean over tracks.
* ``<choices>_agreement`` for per-region choices (``status_agreement``) over matched tracks, and
  for per-image choices (``visit_assessment_agreement``) over images: Cohen's kappa for two
  annotators, Krippendorff's alpha for more.

Tags are recognised from the results themselves (brushlabels, polygonlabels, a per-region
``number`` for the track id, per-region or per-item ``choices``), so a Label Studio JSON export
needs no label config.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from review import brush, categorical, polygons

IOU_METRICS = ("brush_iou_mean", "brush_iou_min", "polygon_iou")


@dataclass
class Settlement:
    """A reviewer marked one annotation as ground truth."""

    annotation_id: int
    by: str
    at: str


@dataclass
class TaskAgreement:
    task_id: int
    project: str
    annotators: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    #: per metric: the weakest component, in words (which label, track, image)
    details: dict[str, str] = field(default_factory=dict)
    settled: Settlement | None = None
    error: str | None = None

    def agreement(self, gating: list[str] | None = None) -> float | None:
        """The task's agreement: the lowest of the gating metrics it has (all when none)."""
        names = [m for m in (gating or self.metrics) if m in self.metrics]
        return min((self.metrics[m] for m in names), default=None)

    def reason(self, threshold: float, gating: list[str] | None = None) -> str:
        """Why the task is under the threshold: each gating metric below it, worst first."""
        names = [m for m in (gating or self.metrics) if m in self.metrics]
        low = sorted((self.metrics[m], m) for m in names if self.metrics[m] < threshold)
        return "; ".join(f"{m} {v:.2f}: {self.details.get(m, '')}".rstrip(": ")
                         for v, m in low)


def _user(ref: Any, users: dict[int, str]) -> str:
    if isinstance(ref, dict):
        return ref.get("email") or users.get(ref.get("id"), f"user {ref.get('id')}")
    return users.get(ref, f"user {ref}") if ref is not None else "unknown"


def annotations(task: dict) -> list[dict]:
    """The task's submitted annotations (skipped ones left out)."""
    return [a for a in task.get("annotations") or []
            if not a.get("was_cancelled") and a.get("result") is not None]


def _names(anns: list[dict], users: dict[int, str]) -> list[str]:
    names = [_user(a.get("completed_by"), users) for a in anns]
    # the same person twice (two annotations): tell them apart by annotation id
    return [f"{n} (#{a.get('id')})" if names.count(n) > 1 else n
            for n, a in zip(names, anns, strict=True)]


def settlement(task: dict, users: dict[int, str]) -> Settlement | None:
    """The ground-truth annotation, if a reviewer marked one (Label Studio keeps at most one)."""
    for a in task.get("annotations") or []:
        if a.get("ground_truth"):
            who = a.get("updated_by") or a.get("completed_by")
            return Settlement(int(a["id"]), _user(who, users), str(a.get("updated_at") or ""))
    return None


def _image_name(task: dict, index: int) -> str:
    dates = (task.get("data") or {}).get("visit_dates")
    if isinstance(dates, list) and index < len(dates):
        return f"image {index + 1} (visit {dates[index]})"
    return f"image {index + 1}"


# --------------------------------------------------------------------------- brush
Decoded = dict[int, "brush.Intervals | brush.RLEError"]  # id(region) -> its pixels


def _brush_regions(ann: dict) -> list[dict]:
    out = []
    for r in ann["result"]:
        if r.get("type") != "brushlabels":
            continue
        value = r.get("value") or {}
        if value.get("format", "rle") != "rle" or "rle" not in value:
            raise ValueError(f"brush region {r.get('id')}: format {value.get('format')!r} "
                             "is not RLE")
        out.append(r)
    return out


def decode_brushes(tasks: list[dict]) -> Decoded:
    """Every brush region of these tasks decoded in one batch (see brush.runs_many)."""
    regions = []
    for t in tasks:
        for a in annotations(t):
            try:
                regions += _brush_regions(a)
            except ValueError:
                continue  # reported when the task is scored
    got = brush.intervals_many([(r["value"]["rle"], int(r["original_width"]),
                                 int(r["original_height"])) for r in regions])
    return {id(r): g for r, g in zip(regions, got, strict=True)}


def brush_masks(ann: dict, decoded: Decoded | None = None) -> dict[str, brush.Intervals]:
    """{label: set pixels} of one annotation's brush regions (regions of a label unioned)."""
    by_label: dict[str, list[brush.Intervals]] = defaultdict(list)
    for r in _brush_regions(ann):
        value = r["value"]
        iv = decoded.get(id(r)) if decoded is not None else None
        if iv is None:
            iv = brush.rle_intervals(value["rle"], int(r["original_width"]),
                                     int(r["original_height"]))
        if isinstance(iv, brush.RLEError):
            raise iv
        for label in value.get("brushlabels") or ["(no label)"]:
            by_label[label].append(iv)
    return {label: brush.union(*ivs) for label, ivs in by_label.items()}


def _brush(out: TaskAgreement, anns: list[dict], decoded: Decoded | None) -> None:
    masks = [brush_masks(a, decoded) for a in anns]
    if not any(masks):
        return
    scores: list[tuple[float, str]] = []
    for (i, a), (j, b) in itertools.combinations(enumerate(masks), 2):
        for label in sorted(set(a) | set(b)):
            value = brush.iou(a.get(label, brush.union()), b.get(label, brush.union()))
            if value is None:
                continue
            who = f"{out.annotators[i]} vs {out.annotators[j]}"
            if label not in a or label not in b:
                only = out.annotators[i] if label in a else out.annotators[j]
                scores.append((value, f"label {label} only painted by {only} ({who})"))
            else:
                scores.append((value, f"label {label} IoU {value:.2f} ({who})"))
    if scores:
        worst = min(scores)
        out.metrics["brush_iou_mean"] = fmean(v for v, _ in scores)
        out.metrics["brush_iou_min"] = worst[0]
        out.details["brush_iou_mean"] = out.details["brush_iou_min"] = worst[1]


# --------------------------------------------------------------------------- polygons
@dataclass
class _Regions:
    shapes: dict[tuple[int, Any], list] = field(default_factory=lambda: defaultdict(list))
    #: per-region choices: {from_name: {(image, track): value}}
    region_choices: dict[str, dict[tuple[int, Any], str]] = field(
        default_factory=lambda: defaultdict(dict))
    #: per-item choices: {from_name: {image: value}}
    item_choices: dict[str, dict[int, str]] = field(default_factory=lambda: defaultdict(dict))


def _regions(ann: dict) -> _Regions:
    res = ann["result"]
    polys = {r["id"]: r for r in res if r.get("type") == "polygonlabels" and "id" in r}
    track = {r["id"]: r["value"]["number"] for r in res
             if r.get("type") == "number" and r.get("id") in polys}
    out = _Regions()
    key_of = {}
    for rid, r in polys.items():
        image = int(r.get("item_index") or 0)
        key = (image, track.get(rid, f"region {rid} (no track id)"))
        key_of[rid] = key
        out.shapes[key].append(polygons.polygon_px(
            r["value"]["points"], float(r["original_width"]), float(r["original_height"])))
    for r in res:
        if r.get("type") != "choices":
            continue
        picked = (r.get("value") or {}).get("choices") or []
        value = picked[0] if len(picked) == 1 else "|".join(sorted(picked))
        if r.get("id") in key_of:
            out.region_choices[r["from_name"]][key_of[r["id"]]] = value
        elif r.get("id") not in polys:
            out.item_choices[r["from_name"]][int(r.get("item_index") or 0)] = value
    return out


def _track_name(task: dict, key: tuple[int, Any]) -> str:
    image, track = key
    label = f"track {track}" if not str(track).startswith("region") else str(track)
    return f"{label} on {_image_name(task, image)}"


def _polygons(out: TaskAgreement, task: dict, anns: list[dict]) -> None:
    regs = [_regions(a) for a in anns]
    keys = sorted({k for r in regs for k in r.shapes}, key=str)
    scores: list[tuple[float, str]] = []
    for key in keys:
        shapes = [polygons.merged(r.shapes[key]) if key in r.shapes else None for r in regs]
        pair_scores, missing = [], [out.annotators[i] for i, s in enumerate(shapes) if s is None]
        for a, b in itertools.combinations(shapes, 2):
            if a is None and b is None:
                continue
            v = 0.0 if a is None or b is None else polygons.iou(a, b)
            if v is not None:
                pair_scores.append(v)
        if not pair_scores:
            continue
        v = fmean(pair_scores)
        if missing:
            drawn = [n for n in out.annotators if n not in missing]
            why = f"{_track_name(task, key)} drawn only by {', '.join(drawn)}"
        else:
            why = f"{_track_name(task, key)} IoU {v:.2f}"
        scores.append((v, why))
    if scores:
        out.metrics["polygon_iou"] = fmean(v for v, _ in scores)
        out.details["polygon_iou"] = min(scores)[1]
    for name in sorted({n for r in regs for n in r.region_choices}):
        items = sorted({k for r in regs for k in r.region_choices[name]}, key=str)
        ratings = [[r.region_choices[name].get(k) for k in items] for r in regs]
        _categorical(out, f"{name}_agreement", ratings,
                     [_track_name(task, k) for k in items])
    for name in sorted({n for r in regs for n in r.item_choices}):
        items = sorted({k for r in regs for k in r.item_choices[name]})
        ratings = [[r.item_choices[name].get(k) for k in items] for r in regs]
        _categorical(out, f"{name}_agreement", ratings, [_image_name(task, k) for k in items])


def _categorical(out: TaskAgreement, metric: str, ratings: list[list[str | None]],
                 items: list[str]) -> None:
    value = categorical.agreement(ratings)
    if value is None:
        return
    out.metrics[metric] = value
    differ = []
    for i, item in enumerate(items):
        answers = [row[i] for row in ratings]
        given = {a for a in answers if a is not None}
        if len(given) > 1:
            differ.append(f"{item}: " + " vs ".join(
                f"{a} ({n})" for a, n in zip(answers, out.annotators, strict=True)
                if a is not None))
    if differ:
        out.details[metric] = "; ".join(differ[:3]) + (
            f"; {len(differ) - 3} more" if len(differ) > 3 else "")


def task_agreement(task: dict, *, project: str, users: dict[int, str] | None = None,
                   decoded: Decoded | None = None) -> TaskAgreement | None:
    """Agreement of one Label Studio task (as in a JSON export); None below two annotations.
    ``decoded``: its brush regions already decoded (decode_brushes over a batch of tasks)."""
    users = users or {}
    anns = annotations(task)
    if len(anns) < 2:
        return None
    out = TaskAgreement(int(task["id"]), project, _names(anns, users),
                        settled=settlement(task, users))
    try:
        _brush(out, anns, decoded)
        _polygons(out, task, anns)
    except (ValueError, KeyError, TypeError) as e:
        out.metrics.clear()
        out.details.clear()
        out.error = f"{type(e).__name__}: {e}"
    return out
