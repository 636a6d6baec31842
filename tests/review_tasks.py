"""Label Studio tasks with annotations, built the way the labeling UI stores them, for the
review tests and benchmark (brush masks as RLE, polygons in percent, per-region track id and
status, per-image visit assessment)."""

from __future__ import annotations

import itertools

import numpy as np

from backend.rle import mask2rle

_ids = itertools.count(1)


def brush_region(mask: np.ndarray, label: str, *, from_name: str = "mask",
                 to_name: str = "image") -> dict:
    h, w = mask.shape
    return {"id": f"b{next(_ids)}", "from_name": from_name, "to_name": to_name,
            "type": "brushlabels", "original_width": w, "original_height": h,
            "image_rotation": 0, "value": {"format": "rle",
                                           "rle": mask2rle(mask.astype(np.uint8) * 255),
                                           "brushlabels": [label]}}


def lesion(points: list[tuple[float, float]], *, track: int | None, status: str | None,
           image: int = 0, size: tuple[int, int] = (200, 100), label: str = "Nevus"
           ) -> list[dict]:
    """A polygon (percent points) with its per-region track id and status results."""
    rid = f"p{next(_ids)}"
    w, h = size
    common = {"id": rid, "to_name": "images", "original_width": w, "original_height": h,
              "image_rotation": 0, "item_index": image}
    out = [{**common, "from_name": "lesion", "type": "polygonlabels",
            "value": {"points": [list(p) for p in points], "closed": True,
                      "polygonlabels": [label]}}]
    if track is not None:
        out.append({**common, "from_name": "track_id", "type": "number",
                    "value": {"number": track}})
    if status is not None:
        out.append({**common, "from_name": "status", "type": "choices",
                    "value": {"choices": [status]}})
    return out


def visit(image: int, assessment: str) -> dict:
    return {"id": f"v{next(_ids)}", "from_name": "visit_assessment", "to_name": "images",
            "type": "choices", "item_index": image, "value": {"choices": [assessment]}}


def annotation(result: list[dict], user: int, *, ann_id: int | None = None,
               ground_truth: bool = False) -> dict:
    return {"id": ann_id or next(_ids), "completed_by": user, "result": result,
            "was_cancelled": False, "ground_truth": ground_truth,
            "updated_at": "2026-01-01T00:00:00Z", "updated_by": user}


def task(task_id: int, *annotations: dict, data: dict | None = None) -> dict:
    return {"id": task_id, "data": data or {"image": f"s3://bucket/images/{task_id}.png"},
            "annotations": list(annotations)}


def rect(h: int, w: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


def blob_pair(h: int, w: int, rng: np.random.Generator, shift: float) -> tuple[np.ndarray,
                                                                                 np.ndarray]:
    """Two annotators' masks of one irregular blob, the second moved by ``shift`` pixels."""
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
    r = rng.uniform(0.1, 0.25) * min(h, w)
    phase = rng.uniform(0, 6.28)

    def blob(dx: float, dy: float) -> np.ndarray:
        ang = np.arctan2(yy - cy - dy, xx - cx - dx)
        rad = r * (1 + 0.15 * np.sin(3 * ang + phase) + 0.05 * np.sin(11 * ang))
        return np.hypot(yy - cy - dy, xx - cx - dx) < rad

    return blob(0, 0), blob(shift, shift / 2)
