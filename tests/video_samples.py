"""A generated short video with two moving objects, shared by the video tests and bench."""

from __future__ import annotations

import base64
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class SampleVideo:
    data: bytes  # MP4 (mp4v) bytes
    frames: int
    fps: int
    width: int
    height: int

    def box(self, obj: int, frame: int) -> tuple[int, int, int, int]:
        """Pixel box (x0, y0, x1, y1) of object ``obj`` (0: square, 1: disc) on 1-based
        ``frame``."""
        i = frame - 1
        if obj == 0:
            x0 = 20 + 6 * i * self.width // 320
            return x0, self.height // 6, x0 + self.width // 6, self.height // 6 + self.height // 5
        cx, cy, r = self.width - 40 - 5 * i * self.width // 320, self.height * 2 // 3, 26
        return cx - r, cy - r, cx + r + 1, cy + r + 1

    def percent(self, obj: int, frame: int) -> dict[str, float]:
        x0, y0, x1, y1 = self.box(obj, frame)
        return {"x": 100 * x0 / self.width, "y": 100 * y0 / self.height,
                "width": 100 * (x1 - x0) / self.width, "height": 100 * (y1 - y0) / self.height}

    def data_uri(self) -> str:
        return "data:video/mp4;base64," + base64.b64encode(self.data).decode()


def two_objects_video(frames: int = 24, width: int = 320, height: int = 240,
                      fps: int = 24) -> SampleVideo:
    """A red square moving right and a green disc moving left on a dim noisy background."""
    import cv2

    video = SampleVideo(b"", frames, fps, width, height)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "two-objects.mp4")
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        for frame in range(1, frames + 1):
            img = (rng.random((height, width, 3)) * 40).astype(np.uint8)
            x0, y0, x1, y1 = video.box(0, frame)
            cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), (40, 40, 230), -1)
            bx0, by0, bx1, _ = video.box(1, frame)
            cv2.circle(img, ((bx0 + bx1) // 2, by0 + (bx1 - bx0) // 2), (bx1 - bx0) // 2,
                       (60, 220, 60), -1)
            writer.write(img)
        writer.release()
        video.data = Path(path).read_bytes()
    return video


def region(video: SampleVideo, rid: str, obj: int, frame: int, label: str,
           from_name: str = "box", to_name: str = "video") -> dict:
    """A ``videorectangle`` context region as Label Studio's editor sends it: one keyframe
    (the box drawn on ``frame``) around object ``obj``."""
    return {
        "id": rid, "type": "videorectangle", "origin": "manual",
        "from_name": from_name, "to_name": to_name,
        "value": {
            "framesCount": video.frames, "duration": video.frames / video.fps,
            "labels": [label],
            "sequence": [{"frame": frame, "enabled": True, "rotation": 0,
                          "time": frame / video.fps, **video.percent(obj, frame)}],
        },
    }
