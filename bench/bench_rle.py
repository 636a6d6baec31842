"""Brush RLE: backend.rle vs upstream label_studio_sdk.converter.brush, encode and decode.

``python -m bench.bench_rle [--width 4096 --height 3072 --repeat 5]``: both encoders and both
decoders on the same mask with complex edges, in one run: identical output asserted
(bytes for encode, arrays for decode), best-of-N times, ratios and a rich table.
"""

from __future__ import annotations

import time

import numpy as np
import typer
from label_studio_sdk.converter import brush
from rich.console import Console
from rich.table import Table

from backend import rle

TARGET = 50.0


def complex_mask(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Organ-like blobs with wavy edges, thin vessels and speckle: many short runs."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    field = np.sin(xx / 37.0) * np.cos(yy / 23.0) + 0.5 * np.sin((xx + yy) / 11.0)
    mask = field > 0.1
    mask |= (np.abs(np.sin(xx / 5.0 + yy / 90.0)) < 0.05)  # thin curved lines
    mask ^= np.random.default_rng(seed).random((height, width)) > 0.999  # speckle
    return mask.astype(np.uint8) * 255


def best_of(fn, arg, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(arg)
        best = min(best, time.perf_counter() - start)
    return best, out


def main(
    width: int = typer.Option(4096, help="Mask width."),
    height: int = typer.Option(3072, help="Mask height."),
    repeat: int = typer.Option(5, help="Runs of ours (best kept)."),
    upstream_repeat: int = typer.Option(2, help="Runs of upstream (best kept)."),
) -> None:
    console = Console()
    mask = complex_mask(width, height)
    runs = int(np.count_nonzero(mask.ravel()[1:] != mask.ravel()[:-1])) + 1
    t_up_enc, up = best_of(brush.mask2rle, mask, upstream_repeat)
    t_enc, ours = best_of(rle.mask2rle, mask, repeat)
    if ours != up:
        raise SystemExit("MISMATCH: backend.rle.mask2rle differs from upstream mask2rle")
    t_up_dec, up_flat = best_of(brush.decode_rle, up, upstream_repeat)
    t_dec, flat = best_of(rle.decode_rle, up, repeat)
    if not np.array_equal(flat, up_flat):
        raise SystemExit("MISMATCH: backend.rle.decode_rle differs from upstream decode_rle")
    table = Table(title=f"Brush RLE, {width}x{height} mask, {runs} runs, {len(up)} bytes")
    for column in ("operation", "upstream (ms)", "backend.rle (ms)", "speedup", "identical"):
        table.add_column(column, justify="left" if column == "operation" else "right")
    ratios = {}
    for name, t_up, t_ours in (("encode mask2rle", t_up_enc, t_enc),
                               ("decode decode_rle", t_up_dec, t_dec)):
        ratios[name] = t_up / t_ours
        table.add_row(name, f"{t_up * 1e3:.1f}", f"{t_ours * 1e3:.1f}",
                      f"{ratios[name]:.1f}x", "[green]yes[/green]")
    console.print(table)
    for name, ratio in ratios.items():
        verdict = "[green]met[/green]" if ratio >= TARGET else "[red]NOT met[/red]"
        console.print(f"{name}: target >= {TARGET:.0f}x {verdict} ({ratio:.1f}x)")


if __name__ == "__main__":
    typer.run(main)
