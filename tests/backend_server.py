"""The SAM2 backend as a real process on a loopback port (CPU, tiny config, random weights).

``sam2_backend`` (session): ``.url``, ``.env`` (the SAM2_* settings it runs with), ``.log``
(path of its output), ``.health()``. ``start_backend(tmp_path, **env)`` starts another one
with different settings (e.g. missing weights) for a single test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Settings for tests: tiny SAM2.1 on CPU, random weights explicitly allowed, seeded.
TEST_ENV = {
    "SAM2_MODEL": "tiny",
    "SAM2_DEVICE": "cpu",
    "SAM2_ALLOW_RANDOM_WEIGHTS": "1",
    "SAM2_RANDOM_SEED": "0",
    "SAM2_CACHE_MAX_MB": "512",
    "SAM2_MAX_IMAGE_BYTES": str(8 * 2**20),
    "SAM2_MAX_IMAGE_PIXELS": str(4_000_000),
    "SAM2_TORCH_THREADS": "2",
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

    def health(self) -> httpx.Response:
        return httpx.get(f"{self.url}/health", timeout=5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_backend(
    workdir: Path, *, expect_up: bool = True, timeout: float = 120, **env: str
) -> BackendProcess:
    """Start ``python -m backend`` on a free loopback port; wait until /health answers."""
    port = free_port()
    settings = {**TEST_ENV, **env}
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
