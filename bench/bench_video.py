"""SAM2 video tracking throughput: this backend's tracker against the public SAM2 video
example's approach, in one run, on the same model object and the same generated video.

``python -m bench.bench_video [--config tiny|...|large] [--device cpu|cuda] [--objects 2]
[--frames 4]``

Both track ``--objects`` moving objects (prompted on the first frames) through ``--frames``
frames past the last prompt:

1. this backend (``backend.video.VideoTracker.track``): the video decoded in memory, one
   inference state holding every object, each object's box as a box prompt, one propagation;
2. the same call again on the same task and window (the decoded state is reused);
3. the public example's approach, per object (it tracks one object per call): frames written
   to JPEG files, ``init_state`` on the folder, the box turned into five positive points,
   one propagation per object, boxes from the masks.

Rounds are interleaved with alternating order (a shared machine's load drifts); reported are
medians: seconds, frames per second (window frames / time) and object-frames per second,
and each row's throughput as a ratio of the example's. Random weights (the architecture,
hence the cost, is the real one). On CPU, both run with the backend's bfloat16-memory
widening (SAM2 needs CUDA autocast otherwise), so the comparison stays like for like.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time

import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table


def _example_one_object(predictor, video, first: int, last: int, frame: int,
                        box: tuple[int, int, int, int]) -> dict[int, object]:
    """The public example's steps for one object, from decoding to boxes."""
    import cv2
    import torch

    out: dict[int, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "video.mp4")
        with open(path, "wb") as fh:
            fh.write(video.data)
        cap = cv2.VideoCapture(path)
        idx = 0
        frames_dir = os.path.join(tmp, "frames")
        os.mkdir(frames_dir)
        while idx <= last:
            ok, bgr = cap.read()
            if not ok:
                break
            if idx >= first:
                cv2.imwrite(os.path.join(frames_dir, f"{idx:05d}.jpg"), bgr)
            idx += 1
        cap.release()
        # the example enters bfloat16 autocast for the whole process on CUDA
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                    if predictor.device.type == "cuda" else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            state = predictor.init_state(video_path=frames_dir)
            predictor.reset_state(state)
            x0, y0, x1, y1 = box
            w, h = x1 - x0, y1 - y0
            points = np.array([[x0 + w / 2, y0 + h / 2], [x0 + w / 4, y0 + h / 2],
                               [x0 + 3 * w / 4, y0 + h / 2], [x0 + w / 2, y0 + h / 4],
                               [x0 + w / 2, y0 + 3 * h / 4]], dtype=np.float32)
            predictor.add_new_points_or_box(state, frame_idx=frame - first, obj_id=0,
                                            points=points, labels=np.ones(5, np.int32))
            for rel, _, logits in predictor.propagate_in_video(
                    state, start_frame_idx=frame - first, max_frame_num_to_track=last - frame):
                mask = (logits[0, 0] > 0).cpu().numpy()
                ys, xs = np.nonzero(mask)
                out[rel + first] = (xs.min(), ys.min(), xs.max(), ys.max()) if xs.size else None
    return out


def main(
    config: str = typer.Option("tiny", help="SAM2.1 config: tiny, small, base_plus, large."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    objects: int = typer.Option(2, min=1, max=8, help="Objects tracked."),
    frames: int = typer.Option(4, min=1, help="Frames tracked past the last prompt."),
    width: int = typer.Option(320, help="Video width."),
    height: int = typer.Option(240, help="Video height."),
    rounds: int = typer.Option(2, min=1, help="Interleaved rounds; medians are reported."),
) -> None:
    """Exit codes: 0 measured; 2 bad option."""
    import torch

    from backend.settings import Settings
    from backend.video import VideoTracker, probe
    from tests.video_samples import two_objects_video

    console = Console()
    if device == "cuda" and not torch.cuda.is_available():
        console.print("[red]--device cuda but torch sees no GPU: use --device cpu[/red]")
        raise typer.Exit(2)
    settings = Settings(model=config, device=device, allow_random_weights=True,
                        video_frames=frames, video_max_objects=objects)
    total = max(24, objects + frames + 2)
    video = two_objects_video(frames=total, width=width, height=height)
    info = probe(video.data, settings.max_image_pixels)
    tracker = VideoTracker(settings)
    predictor = tracker.predictor
    prompts = [(1 + i, video.box(i % 2, 2 + i)) for i in range(objects)]  # 0-based frames
    first, last = prompts[0][0], prompts[-1][0] + frames
    window = last - first + 1
    boxes = [(f, np.array(b, np.float32)) for f, b in prompts]
    times: dict[str, list[float]] = {"ours": [], "again": [], "example": []}

    def example() -> None:
        for frame, box in prompts:
            _example_one_object(predictor, video, first, last, frame, box)

    with Progress(console=console) as progress:
        bar = progress.add_task("tracking", total=3 * rounds)
        for r in range(rounds):  # interleaved, order alternating: load drift hits all alike
            steps = [("ours", lambda r=r: tracker.track(f"bench-{r}", video.data, info, boxes,
                                                        first, last)),
                     ("again", lambda r=r: tracker.track(f"bench-{r}", video.data, info,
                                                         boxes, first, last)),
                     ("example", example)]
            for key, step in (steps if r % 2 == 0 else [steps[2], *steps[:2]]):
                t0 = time.perf_counter()
                step()
                times[key].append(time.perf_counter() - t0)
                progress.advance(bar)
    med = {k: statistics.median(v) for k, v in times.items()}

    obj_frames = sum(last - f + 1 for f, _ in prompts)
    table = Table(title=f"SAM2.1 {config} video tracking on {device}: {objects} objects, "
                        f"{window}-frame window, {width}x{height}")
    for col in ("approach (median)", "seconds", "frames/s", "object-frames/s", "vs example"):
        table.add_column(col, justify="right" if col != "approach (median)" else "left")
    base = obj_frames / med["example"]
    rows = (("public example (points, one object per call, JPEG folder)", "example"),
            ("this backend (boxes, all objects in one state)", "ours"),
            ("this backend, same task and window again", "again"))
    for name, key in rows:
        rate = obj_frames / med[key]
        table.add_row(name, f"{med[key]:.2f}", f"{window / med[key]:.2f}",
                      f"{rate:.2f}", f"{rate / base:.2f}x")
    console.print(table)
    console.print(f"propagated frames counted by the tracker: {tracker.stats()}")


if __name__ == "__main__":
    typer.run(main)
