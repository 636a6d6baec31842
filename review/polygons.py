"""Polygon regions in pixels and their IoU (shapely).

Label Studio stores polygon points in percent of the image; pixels are ``percent x original
size / 100``, so IoU is computed on the image's own pixel grid (the same result as percent
coordinates only when the image is square).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from shapely import make_valid, union_all
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry


def polygon_px(points: Sequence[Sequence[float]], width: float, height: float) -> BaseGeometry:
    """A Label Studio polygon (points in percent) as a valid shapely geometry in pixels."""
    if len(points) < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {len(points)}")
    poly = Polygon([(x * width / 100.0, y * height / 100.0) for x, y in points])
    return poly if poly.is_valid else make_valid(poly)


def merged(geoms: Iterable[BaseGeometry]) -> BaseGeometry:
    """Union of several regions (one annotator drew a lesion in several pieces)."""
    return union_all(list(geoms))


def iou(a: BaseGeometry, b: BaseGeometry) -> float | None:
    """Intersection over union of two areas; None when both are empty."""
    both = a.union(b).area
    if both == 0:
        return None
    return a.intersection(b).area / both
