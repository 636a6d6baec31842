"""Click latency of the SAM2 backend: cold click vs click answered from the embedding cache.

``python -m bench.bench_sam2 [--config tiny|small|base_plus|large] [--device cpu|cuda]``

In one process, on one synthetic image: (1) the upstream example's way (``set_image`` then
``predict`` on every click), (2) our cold click (cache miss: encoder + decoder), (3) our
cached click (decoder only). Random weights from the config (no checkpoint needed: the
architecture, hence the cost, is the real one). Prints a table and the cold/cached ratio.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import typer
from rich.console import Console
from rich.progress import track
from rich.table import Table

TARGET = 20.0


def synthetic_image(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    img = (rng.random((height, width, 3)) * 40).astype(np.uint8)
    blob = ((xx - width * 0.45) ** 2 / (width * 0.2) ** 2
            + (yy - height * 0.5) ** 2 / (height * 0.25) ** 2) < 1
    img[blob] = (200, 120, 90)
    return img


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(
    config: str = typer.Option("tiny", help="SAM2.1 config: tiny, small, base_plus, large."),
    device: str = typer.Option("cpu", help="cpu, cuda or auto."),
    clicks: int = typer.Option(10, help="Cached clicks to time."),
    cold: int = typer.Option(3, help="Cold clicks (and upstream-style clicks) to time."),
    width: int = typer.Option(1024, help="Image width."),
    height: int = typer.Option(768, help="Image height."),
) -> None:
    import torch
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from backend.model import Prompt, Segmenter
    from backend.settings import Settings

    console = Console()
    seg = Segmenter(Settings(model=config, device=device, allow_random_weights=True))
    console.print(f"SAM2 {config} on {seg.device} ({torch.__version__}); image {width}x{height}")
    if seg.device == "cpu":
        console.print(f"CPU threads: {torch.get_num_threads()}")
    else:
        console.print(f"GPU: {torch.cuda.get_device_name()}")

    rng = np.random.default_rng(0)

    def click() -> Prompt:
        x, y = rng.uniform(0.3, 0.6) * width, rng.uniform(0.3, 0.7) * height
        return Prompt(points=np.array([[x, y]], np.float32), labels=np.array([1], np.int32))

    images = [synthetic_image(width, height, s) for s in range(cold + 1)]
    # warm-up (allocator, kernels) on an image not timed afterwards
    seg.segment("warmup", images[-1], [click()])
    upstream = SAM2ImagePredictor(seg.predictor.model)

    def upstream_click(img: np.ndarray) -> None:
        p = click()
        upstream.set_image(img)  # the public example re-encodes the image on every click
        upstream.predict(point_coords=p.points, point_labels=p.labels, multimask_output=True)

    t_up = [_timed(lambda i=i: upstream_click(images[i])) for i in
            track(range(cold), description="upstream-style clicks", console=console)]
    calls_before = seg.encoder_calls
    t_cold = [_timed(lambda i=i: seg.segment(f"cold{i}", images[i], [click()])) for i in
              track(range(cold), description="cold clicks", console=console)]
    t_hot = [_timed(lambda: seg.segment("cold0", images[0], [click()])) for _ in
             track(range(clicks), description="cached clicks", console=console)]
    encoder_runs = seg.encoder_calls - calls_before

    med_up, med_cold, med_hot = (statistics.median(t) for t in (t_up, t_cold, t_hot))
    table = Table(title=f"Click latency, SAM2.1 {config}, {seg.device}, {width}x{height}")
    for col in ("click", "runs", "median (ms)", "min (ms)", "vs cached"):
        table.add_column(col, justify="left" if col == "click" else "right")
    for name, times, med in (
        ("upstream example (set_image every click)", t_up, med_up),
        ("ours, cold (cache miss)", t_cold, med_cold),
        ("ours, cached embedding", t_hot, med_hot),
    ):
        table.add_row(name, str(len(times)), f"{med * 1e3:.1f}", f"{min(times) * 1e3:.1f}",
                      f"{med / med_hot:.1f}x")
    console.print(table)
    console.print(f"image encoder runs during our {cold + clicks} clicks: {encoder_runs}")
    ratio = med_cold / med_hot
    verdict = "[green]met[/green]" if ratio >= TARGET else "[red]NOT met[/red]"
    console.print(f"cold / cached >= {TARGET:.0f}x: {verdict} ({ratio:.1f}x)")


if __name__ == "__main__":
    typer.run(main)
