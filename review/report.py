"""``agreement.csv`` and a self-contained HTML report: a histogram per metric and the worst
tasks as thumbnails with each annotator's mask or polygons in its own colour.

Both files are written atomically (temp file in the same folder, then ``os.replace``). Images
are embedded as PNG data URLs, so the report holds PHI exactly like the images do: keep it where
the images may be kept.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from review import brush
from review.agreement import TaskAgreement, _regions, annotations, brush_masks
from review.queue import Policy, state

CSV_COLUMNS = ("task_id", "project", "metric", "value", "annotators", "threshold", "below")
COLOURS = ((230, 25, 75), (60, 140, 255), (255, 200, 0), (60, 180, 75), (145, 30, 180),
           (245, 130, 48), (70, 240, 240), (240, 50, 230))
THUMB = 320
WORST = 12  # tasks shown as thumbnails
MASK_ALPHA = 120  # opacity of an annotator's mask over the image
CANVAS = (90, 90, 90)  # drawn on when the image cannot be had


@dataclass
class Scored:
    """One task as the report sees it: its agreement, its project's policy, the task itself."""

    result: TaskAgreement
    policy: Policy
    #: the task itself (data, annotations), kept only for the worst tasks (thumbnails)
    task: dict | None = None


def _atomic_write(path: Path, write: Callable[[io.TextIOBase], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def csv_rows(scored: Iterable[Scored]) -> Iterable[dict]:
    """One row per task and metric, plus the task's ``agreement`` row."""
    for s in scored:
        r, p = s.result, s.policy
        values = dict(r.metrics)
        task_value = r.agreement(list(p.metrics))
        if task_value is not None:
            values["agreement"] = task_value
        for metric, value in values.items():
            yield {"task_id": r.task_id, "project": r.project, "metric": metric,
                   "value": f"{value:.4f}", "annotators": ";".join(r.annotators),
                   "threshold": p.threshold, "below": str(value < p.threshold).lower()}
        if r.error:
            yield {"task_id": r.task_id, "project": r.project, "metric": "error",
                   "value": "", "annotators": ";".join(r.annotators), "threshold": p.threshold,
                   "below": "true"}


def write_csv(path: Path, scored: list[Scored]) -> None:
    def write(fh: io.TextIOBase) -> None:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        w.writeheader()
        w.writerows(csv_rows(scored))

    _atomic_write(path, write)


# --------------------------------------------------------------------------- thumbnails
def _mask(iv: brush.Intervals, width: int, height: int) -> np.ndarray:
    edges = np.zeros(width * height + 1, dtype=np.int32)
    np.add.at(edges, iv[0], 1)
    np.add.at(edges, iv[1], -1)
    return (np.cumsum(edges[:-1]) > 0).reshape(height, width)


def _image_index(s: Scored) -> int:
    """The image the worst polygon track lies on (the first one otherwise)."""
    detail = s.result.details.get("polygon_iou", "")
    if " on image " in detail:
        return int(detail.split(" on image ")[1].split()[0]) - 1
    return 0


def thumbnail(s: Scored, image: Image.Image | None) -> Image.Image:
    """The task's image (or a grey canvas) with each annotator's regions in its colour."""
    anns = annotations(s.task)
    size = _size(anns)
    width, height = size or (image.size if image else (640, 480))
    base = (image.convert("RGB").resize((width, height)) if image is not None
            else Image.new("RGB", (width, height), CANVAS))
    scale = THUMB / max(width, height)
    out = base.resize((max(1, round(width * scale)), max(1, round(height * scale))))
    out = out.convert("RGBA")
    index = _image_index(s)
    for i, ann in enumerate(anns):
        colour = COLOURS[i % len(COLOURS)]
        layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
        try:
            masks = brush_masks(ann)
        except ValueError:
            masks = {}
        for iv in masks.values():
            m = Image.fromarray(_mask(iv, width, height).astype(np.uint8) * 255)
            layer.paste((*colour, MASK_ALPHA), (0, 0), m.resize(out.size))
        draw = ImageDraw.Draw(layer)
        try:
            shapes = _regions(ann).shapes
        except (ValueError, KeyError):
            shapes = {}
        for (image_i, _), geoms in shapes.items():
            if image_i != index:
                continue
            for g in geoms:
                for poly in getattr(g, "geoms", [g]):
                    if not hasattr(poly, "exterior"):
                        continue
                    pts = [(x * scale, y * scale) for x, y in poly.exterior.coords]
                    draw.polygon(pts, fill=(*colour, 60), outline=(*colour, 255), width=2)
        out = Image.alpha_composite(out, layer)
    return out.convert("RGB")


def _size(anns: list[dict]) -> tuple[int, int] | None:
    for a in anns:
        for r in a["result"]:
            if "original_width" in r and "original_height" in r:
                return int(r["original_width"]), int(r["original_height"])
    return None


def _png_url(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


# --------------------------------------------------------------------------- histograms
def histogram_svg(values: list[float], threshold: float, *, bins: int = 20) -> str:
    lo = -1.0 if values and min(values) < 0 else 0.0
    counts, edges = np.histogram(values, bins=bins, range=(lo, 1.0))
    w, h, pad = 360, 140, 22
    top = max(int(counts.max()) if counts.size else 0, 1)
    bar_w = (w - 2 * pad) / bins
    parts = [f'<svg viewBox="0 0 {w} {h + 30}" width="{w}" height="{h + 30}" role="img">']
    for i, c in enumerate(counts):
        bh = (h - pad) * c / top
        below = edges[i + 1] <= threshold
        parts.append(f'<rect x="{pad + i * bar_w:.1f}" y="{h - bh:.1f}" width="{bar_w - 1:.1f}"'
                     f' height="{bh:.1f}" fill="{"#d62728" if below else "#1f77b4"}">'
                     f'<title>{edges[i]:.2f} to {edges[i + 1]:.2f}: {c}</title></rect>')
    tx = pad + (threshold - lo) / (1.0 - lo) * (w - 2 * pad)
    parts.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="4" y2="{h}" stroke="#333" '
                 'stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{tx + 3:.1f}" y="14" font-size="11">threshold {threshold}</text>')
    parts.append(f'<line x1="{pad}" x2="{w - pad}" y1="{h}" y2="{h}" stroke="#333"/>')
    for x in (lo, (lo + 1) / 2, 1.0):
        px = pad + (x - lo) / (1.0 - lo) * (w - 2 * pad)
        parts.append(f'<text x="{px:.1f}" y="{h + 16}" font-size="11" '
                     f'text-anchor="middle">{x:g}</text>')
    parts.append(f'<text x="{pad}" y="{h + 29}" font-size="11">tallest bar: {top} '
                 f'task{"" if top == 1 else "s"}</text>')
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------- HTML
CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}.note{background:#fff4d6;padding:8px 12px;
border-left:4px solid #e0a800}.hists{display:flex;flex-wrap:wrap;gap:18px}.hist{border:1px
solid #ddd;padding:8px}.hist h3{font-size:14px;margin:0 0 6px}.tasks{display:flex;
flex-wrap:wrap;gap:16px}.task{border:1px solid #ddd;padding:8px;width:330px;font-size:12px}
.task img{display:block;max-width:320px}.legend span{display:inline-block;padding:1px 6px;
margin:2px 4px 2px 0;border-radius:3px;color:#fff}table{border-collapse:collapse}td,th{
padding:2px 8px;border-bottom:1px solid #eee;text-align:left}"""


def write_html(path: Path, scored: list[Scored], *, title: str,
               image_of: Callable[[Scored], Image.Image | None], images_note: str | None,
               worst: int = WORST) -> None:
    """The report: summary per project, a histogram per metric, the worst tasks."""
    esc = html.escape
    body = [f"<h1>{esc(title)}</h1>"]
    if images_note:
        body.append(f'<p class="note">{esc(images_note)}</p>')
    projects = sorted({s.result.project for s in scored})
    body.append("<table><tr><th>project</th><th>tasks scored</th><th>threshold</th>"
                "<th>in queue</th><th>settled</th><th>errors</th></tr>")
    for p in projects:
        mine = [s for s in scored if s.result.project == p]
        states = [state(s.result, s.policy) for s in mine]
        body.append(f"<tr><td>{esc(p)}</td><td>{len(mine)}</td>"
                    f"<td>{mine[0].policy.threshold}</td><td>{states.count('queue')}</td>"
                    f"<td>{states.count('settled')}</td><td>{states.count('error')}</td></tr>")
    body.append("</table><h2>Agreement per metric</h2><div class=\"hists\">")
    for p in projects:
        mine = [s for s in scored if s.result.project == p]
        metrics = sorted({m for s in mine for m in s.result.metrics})
        for m in metrics:
            vals = [s.result.metrics[m] for s in mine if m in s.result.metrics]
            body.append(f'<div class="hist"><h3>{esc(p)}: {esc(m)} ({len(vals)} tasks, mean '
                        f'{np.mean(vals):.2f})</h3>'
                        f"{histogram_svg(vals, mine[0].policy.threshold)}</div>")
    body.append("</div>")
    ranked = sorted((s for s in scored if s.task is not None
                     and s.result.agreement(list(s.policy.metrics)) is not None),
                    key=lambda s: s.result.agreement(list(s.policy.metrics)))
    body.append(f"<h2>Worst {min(worst, len(ranked))} tasks</h2><div class=\"tasks\">")
    for s in ranked[:worst]:
        r = s.result
        value = r.agreement(list(s.policy.metrics))
        legend = "".join(f'<span style="background:rgb{COLOURS[i % len(COLOURS)]}">'
                         f"{esc(a)}</span>" for i, a in enumerate(r.annotators))
        reason = r.reason(s.policy.threshold, list(s.policy.metrics)) or "above the threshold"
        img = thumbnail(s, image_of(s))
        body.append(f'<div class="task"><b>task {r.task_id}</b> ({esc(r.project)}): agreement '
                    f"<b>{value:.2f}</b> [{esc(state(r, s.policy))}]"
                    f'<img alt="task {r.task_id}" src="{_png_url(img)}">'
                    f'<div class="legend">{legend}</div><div>{esc(reason)}</div></div>')
    body.append("</div>")
    doc = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
           f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
           + "\n".join(body) + "</body></html>\n")
    _atomic_write(path, lambda fh: fh.write(doc))


