"""Checkpoint resolution: a local path or an s3:// URI in the private model bucket, sha256
verified. Never the internet: http(s) URLs are refused."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from backend.errors import WeightsError
from backend.settings import Settings


def sha256_file(path: Path, chunk: int = 8 * 2**20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, expected: str, source: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(
            f"checkpoint {source} has sha256 {actual}, expected SAM2_CHECKPOINT_SHA256="
            f"{expected}: upload the right file or correct the digest",
            field="SAM2_CHECKPOINT_SHA256",
        )


def _download_s3(uri: str, settings: Settings) -> Path:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key:
        raise WeightsError(
            f"SAM2_CHECKPOINT={uri!r} is not s3://bucket/key", field="SAM2_CHECKPOINT"
        )
    target_dir = Path(settings.weights_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{settings.checkpoint_sha256}.pt"
    if target.exists() and sha256_file(target) == settings.checkpoint_sha256:
        return target
    client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url)
    fd, tmp = tempfile.mkstemp(dir=target_dir, suffix=".part")
    os.close(fd)
    try:
        client.download_file(bucket, key, tmp)
        _verify(Path(tmp), settings.checkpoint_sha256 or "", uri)
        os.replace(tmp, target)
    except (BotoCoreError, ClientError) as exc:
        raise WeightsError(
            f"cannot read SAM2_CHECKPOINT={uri!r} from S3 ({exc}): upload the checkpoint to the "
            "model bucket (see docs/backend.md) and grant the backend's role s3:GetObject",
            field="SAM2_CHECKPOINT",
        ) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def resolve_checkpoint(settings: Settings) -> Path | None:
    """The verified local checkpoint path, or None when random weights are explicitly allowed."""
    uri = settings.checkpoint
    if not uri:
        if settings.allow_random_weights:
            return None
        raise WeightsError(
            "no SAM2 weights: set SAM2_CHECKPOINT to a local .pt path or an s3:// URI in the "
            "model bucket (with SAM2_CHECKPOINT_SHA256); SAM2_ALLOW_RANDOM_WEIGHTS=1 is for "
            "tests and benchmarks only",
            field="SAM2_CHECKPOINT",
        )
    if not settings.checkpoint_sha256:
        raise WeightsError(
            f"SAM2_CHECKPOINT={uri!r} needs SAM2_CHECKPOINT_SHA256 (sha256sum of the file)",
            field="SAM2_CHECKPOINT_SHA256",
        )
    scheme = urlparse(uri).scheme
    if scheme == "s3":
        return _download_s3(uri, settings)
    if scheme in ("http", "https", "ftp", "hf"):
        raise WeightsError(
            f"SAM2_CHECKPOINT={uri!r}: weights are never fetched from the internet; copy the "
            "checkpoint into the model bucket and use its s3:// URI",
            field="SAM2_CHECKPOINT",
        )
    path = Path(uri.removeprefix("file://"))
    if not path.is_file():
        raise WeightsError(
            f"SAM2_CHECKPOINT={uri!r} does not exist: mount the checkpoint there or use the "
            "s3:// URI of the model bucket",
            field="SAM2_CHECKPOINT",
        )
    _verify(path, settings.checkpoint_sha256, uri)
    return path
