"""The SAM2 backend of the local stack: tiny config on CPU, basic auth on, weights explicit.

Weights come from ``SAM2_CHECKPOINT`` (a local ``.pt`` file; its sha256 is computed here when
``SAM2_CHECKPOINT_SHA256`` is not set, since the user chose the file) or, only when asked for
with ``--random-weights``, from a seeded random initialisation: the real architecture and
latency, meaningless masks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from local_stack.procs import LOOPBACK, StackError, spawn

REPO = Path(__file__).resolve().parent.parent

RANDOM_WEIGHTS_BANNER = (
    "SAM2 runs with RANDOM WEIGHTS (--random-weights): clicks get answers with the real model "
    "architecture and latency, but the masks are MEANINGLESS. Point SAM2_CHECKPOINT at "
    "sam2.1_hiera_tiny.pt for real masks."
)


def weights_env(checkpoint: str | None, *, random_weights: bool,
                checkpoint_sha256: str | None = None) -> dict[str, str]:
    """SAM2_* weight settings; a StackError (exit 2) naming the fix for anything unusable."""
    if checkpoint:
        if random_weights:
            raise StackError(
                f"both SAM2_CHECKPOINT={checkpoint!r} and --random-weights given: drop one",
                exit_code=2, service="sam2-backend")
        if urlparse(checkpoint).scheme not in ("", "file"):
            raise StackError(
                f"SAM2_CHECKPOINT={checkpoint!r}: the local stack reads a local .pt file; "
                "copy the checkpoint to this machine and point SAM2_CHECKPOINT at it",
                exit_code=2, service="sam2-backend")
        path = Path(checkpoint.removeprefix("file://")).expanduser().resolve()
        if not path.is_file():
            raise StackError(
                f"SAM2_CHECKPOINT={checkpoint!r} does not exist: point it at a SAM2.1 tiny "
                "checkpoint (sam2.1_hiera_tiny.pt) on this machine, or pass --random-weights "
                "for meaningless masks", exit_code=2, service="sam2-backend")
        if not checkpoint_sha256:
            from backend.weights import sha256_file

            checkpoint_sha256 = sha256_file(path)
        return {"SAM2_CHECKPOINT": str(path), "SAM2_CHECKPOINT_SHA256": checkpoint_sha256}
    if random_weights:
        return {"SAM2_ALLOW_RANDOM_WEIGHTS": "1", "SAM2_RANDOM_SEED": "0"}
    raise StackError(
        "no SAM2 weights: set SAM2_CHECKPOINT to a local sam2.1_hiera_tiny.pt, or pass "
        "--random-weights to try the workflow with meaningless masks", exit_code=2,
        service="sam2-backend")


def backend_env(*, weights: dict[str, str], label_studio_url: str, api_key: str,
                auth_user: str, auth_password: str) -> dict[str, str]:
    """The backend's environment: our process env without SAM2_* / LABEL_STUDIO_*, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAM2_", "LABEL_STUDIO_"))}
    env.update({
        "SAM2_MODEL": "tiny",
        "SAM2_DEVICE": "cpu",
        "SAM2_TORCH_THREADS": str(min(4, os.cpu_count() or 1)),
        "SAM2_CACHE_MAX_MB": "512",
        "SAM2_BASIC_AUTH_USER": auth_user,
        "SAM2_BASIC_AUTH_PASS": auth_password,
        "LABEL_STUDIO_URL": label_studio_url,
        "LABEL_STUDIO_API_KEY": api_key,
        "PYTHONUNBUFFERED": "1",
        **weights,
    })
    return env


def start_backend(port: int, env: dict[str, str], log: Path
                  ) -> tuple[subprocess.Popen, Callable[[], str | None]]:
    """``python -m backend`` on 127.0.0.1:port; the process and a health check that fails
    at once when the model could not load (the backend says why in /health)."""
    import httpx

    proc = spawn([sys.executable, "-m", "backend", "--host", LOOPBACK, "--port", str(port)],
                 log=log, env=env, cwd=REPO)

    def check() -> str | None:
        try:
            r = httpx.get(f"http://{LOOPBACK}:{port}/health", timeout=5)
        except httpx.HTTPError as exc:
            return type(exc).__name__
        if r.status_code == 200:
            return None
        error = r.json().get("error") if r.headers.get("content-type", "").startswith(
            "application/json") else None
        if error:
            raise StackError(f"sam2-backend cannot load the model: {error.get('message')}; "
                             f"log {log}", exit_code=3, service="sam2-backend", log=log)
        return f"HTTP {r.status_code}"

    return proc, check
