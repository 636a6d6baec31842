"""Where an export goes: a local folder or an ``s3://`` prefix (SSE-KMS), all or nothing.

Files are first written to a staging area (a hidden folder inside the local destination, or a
local temporary folder for S3). :meth:`Sink.commit` then moves each file into place with
``os.replace`` (atomic per file) or uploads it with ``ServerSideEncryption=aws:kms`` and the
given key id; tables are published last, so a reader that sees ``masks.csv`` finds every file
it names. :meth:`Sink.abort` (also on any exception inside ``with Sink(...)``) removes the
staging area: a failed export leaves nothing half-written.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

_S3 = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(.*))?$")
TABLE_SUFFIXES = (".csv", ".parquet")


class SinkError(ValueError):
    """A destination that cannot be used (bad --out, missing --kms-key-id)."""


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket/prefix``; the prefix is empty or ends with one ``/``."""
    match = _S3.match(url)
    if not match:
        raise SinkError(f"--out {url!r}: not an s3://BUCKET/PREFIX URL with a valid bucket "
                        "name (lowercase letters, digits, dots, hyphens)")
    bucket, prefix = match.group(1), (match.group(2) or "").strip("/")
    if "//" in prefix:
        raise SinkError(f"--out {url!r}: the prefix has an empty path segment ('//'): "
                        "write it with single slashes")
    return bucket, f"{prefix}/" if prefix else ""


class Sink:
    """Staged output to ``dest`` (a folder path or ``s3://bucket/prefix``)."""

    def __init__(self, dest: str, *, kms_key_id: str | None = None, s3_client=None) -> None:
        self.dest = dest
        self.is_s3 = dest.startswith("s3://")
        self.published: list[str] = []
        self._folders: set[Path] = set()
        if self.is_s3:
            self.bucket, self.prefix = parse_s3_url(dest)
            if not kms_key_id:
                raise SinkError(f"--out {dest}: S3 exports are written with SSE-KMS: pass "
                                "--kms-key-id (the annotations bucket's KMS key id or ARN)")
            self.kms_key_id = kms_key_id
            self._s3 = s3_client
            self.staging = Path(tempfile.mkdtemp(prefix="labelstack-export-"))
        else:
            root = Path(dest)
            if root.exists() and not root.is_dir():
                raise SinkError(f"--out {dest}: exists and is not a folder: pick a folder")
            root.mkdir(parents=True, exist_ok=True)
            self.root = root
            self.staging = Path(tempfile.mkdtemp(prefix=".labelstack-partial-", dir=root))

    def path(self, relative: str) -> Path:
        """Staging path for ``relative`` (its folder is created)."""
        target = self.staging / relative
        if target.parent not in self._folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(target.parent)
        return target

    def _files(self) -> list[str]:
        files = [p.relative_to(self.staging).as_posix()
                 for p in self.staging.rglob("*") if p.is_file()]
        # tables last: they name the other files
        return sorted(files, key=lambda f: (f.endswith(TABLE_SUFFIXES), f))

    def commit(self) -> list[str]:
        """Publish every staged file; returns their final locations."""
        for relative in self._files():
            source = self.staging / relative
            if self.is_s3:
                key = self.prefix + relative
                self._client().upload_file(
                    str(source), self.bucket, key,
                    ExtraArgs={"ServerSideEncryption": "aws:kms",
                               "SSEKMSKeyId": self.kms_key_id})
                self.published.append(f"s3://{self.bucket}/{key}")
            else:
                final = self.root / relative
                if final.parent not in self._folders:
                    final.parent.mkdir(parents=True, exist_ok=True)
                    self._folders.add(final.parent)
                os.replace(source, final)
                self.published.append(str(final))
        shutil.rmtree(self.staging, ignore_errors=True)
        return self.published

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def _client(self):
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")  # endpoint and credentials: the default chain
        return self._s3

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
