"""Brush RLE: backend.rle.mask2rle vs upstream label_studio_sdk.converter.brush.mask2rle.

``python -m bench.bench_rle [--width 4096 --height 3072 --repeat 5]``: both encoders on the
same mask with complex edges, identical output asserted, best-of-N times and the ratio.
"""

from __future__ import annotations

import time

import numpy as np
import typer
from label_studio_sdk.converter import brush
from rich.console import Console
from rich.table import Table

from backend import rle

TARGET = 30.0


def complex_mask(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Organ-like blobs with wavy edges, thin vessels and speckle: many short runs."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    field = np.sin(xx / 37.0) * np.cos(yy / 23.0) + 0.5 * np.sin((xx + yy) / 11.0)
    mask = field > 0.1
    mask |= (np.abs(np.sin(xx / 5.0 + yy / 90.0)) < 0.05)  # thin curved lines
    mask ^= np.random.default_rng(seed).random((height, width)) > 0.999  # speckle
    return mask.astype(np.uint8) * 255


def best_of(fn, arg, repeat: int) -> tuple[float, list[int]]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(arg)
        best = min(best, time.perf_counter() - start)
    return best, out


def main(
    width: int = typer.Option(4096, help="Mask width."),
    height: int = typer.Option(3072, help="Mask height."),
    repeat: int = typer.Option(5, help="Runs of our encoder (best kept)."),
    upstream_repeat: int = typer.Option(2, help="Runs of the upstream encoder (best kept)."),
) -> None:
    console = Console()
    mask = complex_mask(width, height)
    runs = int(np.count_nonzero(mask.ravel()[1:] != mask.ravel()[:-1])) + 1
    t_up, up = best_of(brush.mask2rle, mask, upstream_repeat)
    t_ours, ours = best_of(rle.mask2rle, mask, repeat)
    if ours != up:
        raise SystemExit("MISMATCH: backend.rle.mask2rle differs from upstream mask2rle")
    ratio = t_up / t_ours
    table = Table(title=f"Brush RLE encode, {width}x{height} mask, {runs} runs, {len(up)} bytes")
    table.add_column("encoder")
    table.add_column("best time (ms)", justify="right")
    table.add_column("speedup", justify="right")
    table.add_row("upstream label_studio_sdk mask2rle", f"{t_up * 1e3:.1f}", "1.0x")
    table.add_row("backend.rle.mask2rle (numpy)", f"{t_ours * 1e3:.1f}", f"{ratio:.1f}x")
    console.print(table)
    console.print("output identical: [green]yes[/green]")
    verdict = "[green]met[/green]" if ratio >= TARGET else "[red]NOT met[/red]"
    console.print(f"target >= {TARGET:.0f}x: {verdict} ({ratio:.1f}x)")


if __name__ == "__main__":
    typer.run(main)
