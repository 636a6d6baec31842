"""Brush agreement from an export file: `labelstack review --from-file` vs a straightforward
baseline (upstream ``decode_rle`` per region, then numpy IoU on the decoded masks).

``python -m bench.bench_review [--tasks 10000 --sample 200]``: writes a Label Studio JSON
export of N tasks with two annotators each (1024x768 brush masks of irregular blobs, the second
annotator's moved by a few pixels), scores it with the review library (streamed file read
included) and with the baseline, checks both give the same IoU per task, prints a rich table.

The baseline is slow (tens of ms per task), so it runs on the first ``--sample`` tasks of the
same file and its time is extrapolated to N (said in the table). Masks come from a pool of
``--distinct`` pairs repeated over the tasks: every task is still parsed, decoded and scored
(nothing is cached), but generating 20,000 distinct 1024x768 masks would take longer than the
benchmark itself.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from tests.review_tasks import annotation, blob_pair, brush_region, task

TARGET = 20.0
H, W = 768, 1024


def write_export(path: Path, n_tasks: int, distinct: int, seed: int = 0) -> int:
    """A JSON export of ``n_tasks`` two-annotator brush tasks; returns its size in bytes."""
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(distinct):
        a, b = blob_pair(H, W, rng, shift=float(rng.uniform(0, 30)))
        pool.append((brush_region(a, "Lesion"), brush_region(b, "Lesion")))
    with path.open("w") as fh:
        fh.write("[")
        for i, (ra, rb) in zip(range(n_tasks), itertools.cycle(pool)):
            t = task(i + 1, annotation([ra], 1), annotation([rb], 2))
            fh.write(("," if i else "") + json.dumps(t, separators=(",", ":")))
        fh.write("]")
    return path.stat().st_size


def baseline(path: Path, limit: int) -> tuple[float, dict[int, float]]:
    """Upstream decode_rle per region, masks unioned per label, numpy IoU. Seconds, IoUs."""
    from label_studio_sdk.converter.brush import decode_rle

    from exports.source import iter_export_file

    start = time.perf_counter()
    out = {}
    for t in itertools.islice(iter_export_file(path), limit):
        masks = []
        for ann in t["annotations"]:
            m: dict[str, np.ndarray] = {}
            for r in ann["result"]:
                h, w = r["original_height"], r["original_width"]
                px = decode_rle(r["value"]["rle"]).reshape(h, w, 4)[:, :, 3] > 0
                for label in r["value"]["brushlabels"]:
                    m[label] = m[label] | px if label in m else px
            masks.append(m)
        a, b = masks
        ious = [np.logical_and(a[k], b[k]).sum() / np.logical_or(a[k], b[k]).sum()
                for k in sorted(set(a) & set(b))]
        out[t["id"]] = float(min(ious))
    return time.perf_counter() - start, out


def ours(path: Path, n_tasks: int) -> tuple[float, dict[int, float]]:
    from review.queue import Policy
    from review.run import ProjectRun, review_file

    run = ProjectRun("bench", Policy())
    with Progress(transient=True) as bar:
        t = bar.add_task("review --from-file", total=n_tasks)
        start = time.perf_counter()
        review_file(path, run, lambda n: bar.advance(t, n))
        elapsed = time.perf_counter() - start
    return elapsed, {s.result.task_id: s.result.metrics["brush_iou_min"] for s in run.scored}


def main(
    tasks: Annotated[int, typer.Option(help="Tasks in the export (two annotators each).")
                     ] = 10_000,
    sample: Annotated[int, typer.Option(help="Tasks the baseline runs on (extrapolated).")
                      ] = 200,
    distinct: Annotated[int, typer.Option(help="Distinct mask pairs repeated over the tasks.")
                        ] = 40,
    keep: Annotated[Path | None, typer.Option(help="Write the export here and keep it.")
                    ] = None,
) -> None:
    console = Console()
    tmp = None
    if keep is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-review-")
        path = Path(tmp.name) / "export.json"
    else:
        path = keep
    try:
        with console.status(f"writing {tasks} tasks of {W}x{H} masks"):
            size = write_export(path, tasks, distinct)
        t_ours, ious = ours(path, tasks)
        n_base = min(sample, tasks)
        t_base, base = baseline(path, n_base)
        worst = max(abs(ious[k] - v) for k, v in base.items())
        if worst > 1e-9:
            raise SystemExit(f"MISMATCH: IoU differs from the baseline by {worst}")
        t_base_all = t_base / n_base * tasks
        ratio = t_base_all / t_ours
        table = Table(title=f"Brush agreement from an export file: {tasks} tasks x 2 "
                            f"annotators, {W}x{H} masks, file {size / 1e6:.0f} MB "
                            f"(CPU cores: {os.cpu_count()})")
        for col in ("pipeline", "tasks timed", "time (s)", "per task (ms)",
                    f"time for {tasks} (s)", "speedup"):
            table.add_column(col, justify="right" if col != "pipeline" else "left")
        table.add_row("baseline: upstream decode_rle + numpy IoU", str(n_base),
                      f"{t_base:.2f}", f"{t_base / n_base * 1e3:.2f}",
                      f"{t_base_all:.1f} (extrapolated)" if n_base < tasks
                      else f"{t_base_all:.1f}", "1.0x")
        table.add_row("review library (RLE runs, interval IoU)", str(tasks), f"{t_ours:.2f}",
                      f"{t_ours / tasks * 1e3:.2f}", f"{t_ours:.1f}", f"{ratio:.1f}x")
        console.print(table)
        console.print(f"both read the file with the same streaming JSON parser; IoU equal on "
                      f"the {n_base} sampled tasks (max difference {worst:.1e}); target "
                      f"{TARGET:.0f}x: {'met' if ratio >= TARGET else 'NOT met'}")
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    typer.run(main)
