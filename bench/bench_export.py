"""Brush masks to PNG: ``labelstack export masks`` vs the upstream converter's path.

``python -m bench.bench_export [--regions 10000 --width 1024 --height 768 --upstream-sample 40]``

Writes a Label Studio JSON export with ``--regions`` brush regions (lesion-like blobs with
ragged edges, one region per task), then times, in one run:

* ours: ``exports.masks.export_masks`` streaming the file (``exports.source``), decoding
  every RLE (``backend.rle``), writing one PNG per region plus ``masks.csv``, staged and
  published atomically;
* upstream: ``label_studio_sdk.converter.brush.save_brush_images_from_annotation`` (the
  BRUSH_TO_PNG path: pure-Python ``decode_rle`` then a PIL PNG) on a sample of
  ``--upstream-sample`` regions, extrapolated to all regions (it is too slow to run on all;
  the table says so).

The PNGs of the sample are compared pixel by pixel.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import typer
from label_studio_sdk.converter import brush
from PIL import Image
from rich.console import Console
from rich.table import Table

from backend.rle import mask2rle
from exports.masks import export_masks
from exports.sink import Sink
from exports.source import iter_export_file


def lesion_masks(width: int, height: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` distinct blobs with wavy, noisy edges (a few per image)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    masks = []
    for _ in range(count):
        mask = np.zeros((height, width), dtype=bool)
        for _ in range(rng.integers(1, 4)):
            cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
            r = rng.uniform(0.05, 0.2) * min(width, height)
            angle = np.arctan2(yy - cy, xx - cx)
            edge = r * (1 + 0.15 * np.sin(5 * angle + rng.uniform(0, 6)))
            mask |= np.hypot(xx - cx, yy - cy) < edge
        mask ^= rng.random((height, width)) > 0.9995
        masks.append(mask.astype(np.uint8) * 255)
    return masks


def write_export(path: Path, masks: list[np.ndarray], regions: int) -> None:
    """A JSON export, one task per region, written task by task."""
    rles = [mask2rle(m) for m in masks]
    h, w = masks[0].shape
    with open(path, "w") as f:
        f.write("[")
        for i in range(regions):
            item = {"id": f"r{i}", "type": "brushlabels", "from_name": "mask",
                    "to_name": "image", "original_width": w, "original_height": h,
                    "image_rotation": 0, "value": {"format": "rle", "rle": rles[i % len(rles)],
                                                   "brushlabels": ["Lesion"]}}
            task = {"id": i + 1, "data": {"image": f"s3://b/{i}.png"}, "predictions": [],
                    "annotations": [{"id": i + 1, "completed_by": 1, "result": [item]}]}
            f.write(("," if i else "") + json.dumps(task))
        f.write("]")


def upstream(export: Path, out: Path, sample: int) -> list[Path]:
    """The converter's BRUSH_TO_PNG path on the first ``sample`` regions."""
    written = []
    for task in iter_export_file(export):
        if task["id"] > sample:
            break
        annotation = task["annotations"][0]
        results = [{"type": r["type"], "rle": r["value"]["rle"],
                    "original_width": r["original_width"],
                    "original_height": r["original_height"],
                    "brushlabels": r["value"]["brushlabels"]} for r in annotation["result"]]
        brush.save_brush_images_from_annotation(task["id"], annotation["id"], "1", "mask",
                                                results, str(out), out_format="png")
        written.append(out / f"task-{task['id']}-annotation-{annotation['id']}-by-1-"
                              "mask-Lesion-0.png")
    return written


def main(regions: int = typer.Option(10_000, help="Brush regions to export."),
         width: int = typer.Option(1024, help="Mask width."),
         height: int = typer.Option(768, help="Mask height."),
         distinct: int = typer.Option(24, help="Distinct masks cycled through the regions."),
         upstream_sample: int = typer.Option(40, help="Regions the upstream path runs on.")
         ) -> None:
    console = Console(width=150)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export = tmp / "export.json"
        masks = lesion_masks(width, height, distinct)
        write_export(export, masks, regions)
        size_mb = export.stat().st_size / 1e6

        start = time.perf_counter()
        with Sink(str(tmp / "ours")) as sink:
            summary = export_masks(iter_export_file(export), sink, fmt="png")
            sink.commit()
        t_ours = time.perf_counter() - start

        (tmp / "upstream").mkdir()
        start = time.perf_counter()
        theirs = upstream(export, tmp / "upstream", upstream_sample)
        t_up_sample = time.perf_counter() - start
        for i, path in enumerate(theirs):
            ours = np.asarray(Image.open(tmp / "ours" / "masks" /
                                         f"task-{i + 1}-annotation-{i + 1}-region-r{i}.png"
                                         ).convert("L"))
            if not np.array_equal(np.asarray(Image.open(path)), ours):
                raise SystemExit(f"MISMATCH: region {i} differs from the upstream converter's")
            if not np.array_equal(ours, masks[i % len(masks)]):
                raise SystemExit(f"MISMATCH: region {i} differs from its source mask")

    per_up = t_up_sample / len(theirs)
    t_up = per_up * regions
    table = Table(title=f"Brush regions to PNG: {regions} regions of {width}x{height} "
                        f"({size_mb:.0f} MB export file)")
    for column in ("path", "regions run", "time (s)", "per region (ms)", "for all (s)",
                   "speedup"):
        table.add_column(column, justify="left" if column == "path" else "right")
    table.add_row("labelstack export masks (streamed, staged, masks.csv)",
                  str(summary.regions), f"{t_ours:.1f}", f"{1e3 * t_ours / regions:.2f}",
                  f"{t_ours:.1f}", f"{t_up / t_ours:.0f}x")
    table.add_row("upstream converter BRUSH_TO_PNG (decode_rle + PIL)", str(len(theirs)),
                  f"{t_up_sample:.1f}", f"{1e3 * per_up:.1f}",
                  f"{t_up:.0f} (extrapolated)", "1x")
    console.print(table)
    console.print(f"PNGs identical to upstream on the {len(theirs)}-region sample and to the "
                  "source masks: [green]yes[/green]")


if __name__ == "__main__":
    typer.run(main)
