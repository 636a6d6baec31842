"""The SAM2 backend as a real process on a loopback port (CPU, tiny config, random weights).

``sam2_backend`` (session): ``.url``, ``.env`` (the SAM2_* settings it runs with), ``.log``
(path of its output), ``.health()`` (open), ``.post(path, ...)`` (with the caller credentials,
``.auth``). ``start_backend(tmp_path, **env)`` starts another one with different settings
(e.g. missing weights) for a single test. Callers authenticate with HTTP basic auth, as Label
Studio's BASIC_AUTH ML connection does: ``BACKEND_AUTH_ENV`` holds the pair under the names
the backend and the bootstrap read.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Caller credentials of the test backends (a fresh password each session).
BACKEND_AUTH_ENV = {
    "SAM2_BASIC_AUTH_USER": "label-studio",
    "SAM2_BASIC_AUTH_PASS": secrets.token_urlsafe(18),
}

#: Settings for tests: tiny SAM2.1 on CPU, random weights explicitly allowed, seeded.
TEST_ENV = {
    **BACKEND_AUTH_ENV,
    "SAM2_MODEL": "tiny",
    "SAM2_DEVICE": "cpu",
    "SAM2_ALLOW_RANDOM_WEIGHTS": "1",
    "SAM2_RANDOM_SEED": "0",
    "SAM2_CACHE_MAX_MB": "512",
    "SAM2_MAX_IMAGE_BYTES": str(8 * 2**20),
    "SAM2_MAX_IMAGE_PIXELS": str(4_000_000),
    "SAM2_TORCH_THREADS": "2",
    "SAM2_ALLOWED_IMAGE_HOSTS": '["127.0.0.1"]',
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class BackendProcess:
    url: str
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen

    @property
    def auth(self) -> tuple[str, str] | None:
        """The (user, password) callers send, None when auth is disabled or file-based."""
        user, password = self.env.get("SAM2_BASIC_AUTH_USER"), self.env.get("SAM2_BASIC_AUTH_PASS")
        return (user, password) if user and password else None

    def health(self) -> httpx.Response:
        return httpx.get(f"{self.url}/health", timeout=5)

    def post(self, path: str, timeout: float = 120, **kwargs: Any) -> httpx.Response:
        """POST with the caller credentials (``auth=None`` in kwargs sends none)."""
        kwargs.setdefault("auth", self.auth)
        return httpx.post(f"{self.url}{path}", timeout=timeout, **kwargs)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_backend(
    workdir: Path, *, expect_up: bool = True, timeout: float = 120, **env: str | None
) -> BackendProcess:
    """Start ``python -m backend`` on a free loopback port; wait until /health answers.
    A setting given as None is left out (e.g. ``SAM2_BASIC_AUTH_PASS=None``)."""
    port = free_port()
    settings = {k: v for k, v in {**TEST_ENV, **env}.items() if v is not None}
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SAM2_", "LABEL_STUDIO_"))
    }
    full_env.update(settings)
    log = Path(workdir) / f"sam2-backend-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    backend = BackendProcess(f"http://127.0.0.1:{port}", settings, log, proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"SAM2 backend exited ({proc.returncode}):\n{log.read_text()}")
        try:
            resp = backend.health()
            if resp.status_code == 200 or not expect_up:
                return backend
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    backend.stop()
    raise RuntimeError(f"SAM2 backend did not become healthy in {timeout}s:\n{log.read_text()}")


@pytest.fixture(scope="session")
def sam2_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    """A running SAM2 backend (tiny, CPU, random weights), stopped after the session."""
    backend = start_backend(tmp_path_factory.mktemp("sam2-backend"))
    try:
        yield backend
    finally:
        backend.stop()


# -- helpers for the backend tests -------------------------------------------------------------

#: A SAM2-style project: brush masks answered from smart keypoints and rectangles.
LABEL_CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="tag" toName="image">
    <Label value="Lesion" background="#FF0000"/>
    <Label value="Organ" background="#0000FF"/>
  </BrushLabels>
  <KeyPointLabels name="tag2" toName="image" smart="true">
    <Label value="Lesion" smart="true" background="#000000" showInline="true"/>
    <Label value="Organ" smart="true" background="#000000" showInline="true"/>
  </KeyPointLabels>
  <RectangleLabels name="tag3" toName="image" smart="true">
    <Label value="Lesion" background="#000000" showInline="true"/>
    <Label value="Organ" background="#000000" showInline="true"/>
  </RectangleLabels>
</View>"""


def sample_image(seed: int, width: int = 256, height: int = 192, fmt: str = "PNG") -> bytes:
    """A small synthetic image with a few bright ellipses on a noisy background."""
    import io

    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    arr = (rng.random((height, width, 3)) * 60).astype(np.uint8)
    im = Image.fromarray(arr)
    draw = ImageDraw.Draw(im)
    for _ in range(3):
        x0, y0 = rng.integers(0, width * 2 // 3), rng.integers(0, height * 2 // 3)
        w, h = rng.integers(width // 8, width // 3), rng.integers(height // 8, height // 3)
        color = tuple(int(c) for c in rng.integers(120, 256, 3))
        draw.ellipse([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=color)
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    import base64

    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def keypoint(x: float, y: float, label: str = "Lesion", positive: bool | None = None) -> dict:
    """A Label Studio keypoint context item (percent coordinates); no is_positive if None."""
    item = {
        "type": "keypointlabels",
        "from_name": "tag2",
        "to_name": "image",
        "original_width": 256,
        "original_height": 192,
        "image_rotation": 0,
        "origin": "manual",
        "value": {"x": x, "y": y, "width": 0.6, "keypointlabels": [label]},
    }
    if positive is not None:
        item["is_positive"] = positive
    return item


def rectangle(x: float, y: float, w: float, h: float, label: str = "Lesion") -> dict:
    """A Label Studio rectangle context item (top-left corner and size in percent)."""
    return {
        "type": "rectanglelabels",
        "from_name": "tag3",
        "to_name": "image",
        "original_width": 256,
        "original_height": 192,
        "image_rotation": 0,
        "origin": "manual",
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0,
                  "rectanglelabels": [label]},
    }


def predict_body(image_url: str, items: list[dict], task_id: int = 1) -> dict:
    """A /predict request shaped like Label Studio's interactive call."""
    return {
        "tasks": [{"id": task_id, "data": {"image": image_url}}],
        "project": "1.1700000000",
        "label_config": LABEL_CONFIG,
        "params": {"login": None, "password": None, "context": {"result": items}},
    }


def decode_region(region: dict):
    """The H x W mask of a brushlabels region, decoded with the upstream converter."""
    import numpy as np
    from label_studio_sdk.converter.brush import decode_rle

    flat = decode_rle(region["value"]["rle"])
    rgba = np.reshape(flat, (region["original_height"], region["original_width"], 4))
    return rgba[:, :, 3]


def wait_prewarm_idle(backend: BackendProcess, timeout: float = 300) -> dict:
    """/health once every scheduled background encode has finished (or failed)."""
    deadline = time.monotonic() + timeout
    while True:
        health = backend.health().json()
        p = health["prewarm"]
        done = p["encoded"] + p["already_cached"] + p["failed"]
        if done >= p["scheduled"]:
            return health
        if time.monotonic() > deadline:
            raise AssertionError(f"prewarm still busy after {timeout}s: {p}")
        time.sleep(0.2)
