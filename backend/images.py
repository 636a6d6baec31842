"""Task images: fetched through Label Studio (token), straight from S3, or inline data URIs;
bounded in bytes and pixels, EXIF-oriented, converted to RGB."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import threading
import time
import warnings
from dataclasses import dataclass
from urllib.parse import urljoin, urlparse

import httpx
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from backend.errors import ImageNotDecodable, ImageSourceRefused, ImageTooLarge, ImageUnreachable
from backend.settings import Settings


@dataclass
class LoadedImage:
    key: str  # sha256 of the encoded bytes: the embedding cache key
    rgb: np.ndarray  # H x W x 3 uint8, EXIF orientation applied

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def _is_jwt(token: str) -> bool:
    parts = token.split(".")
    return len(parts) == 3 and all(parts)


class LabelStudioAuth:
    """Authorization header for Label Studio: a legacy token as ``Token``; a personal access
    token (a JWT refresh token) is exchanged at /api/token/refresh/ for a short-lived access
    token sent as ``Bearer``."""

    def __init__(self, base_url: str, token: str, client: httpx.Client) -> None:
        self.base_url, self.token, self.client = base_url, token, client
        self._access: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def header(self) -> dict[str, str]:
        if not _is_jwt(self.token):
            return {"Authorization": f"Token {self.token}"}
        with self._lock:
            if self._access is None or time.monotonic() > self._expires:
                url = urljoin(self.base_url + "/", "api/token/refresh/")
                try:
                    resp = self.client.post(url, json={"refresh": self.token})
                except httpx.HTTPError as exc:
                    raise ImageUnreachable(f"cannot reach Label Studio at {url}: {exc}") from exc
                if resp.status_code != 200:
                    raise ImageUnreachable(
                        f"Label Studio refused LABEL_STUDIO_API_KEY (HTTP {resp.status_code} "
                        "from /api/token/refresh/): create a new personal access token",
                        field="LABEL_STUDIO_API_KEY",
                    )
                self._access = resp.json()["access"]
                self._expires = time.monotonic() + 240  # access tokens live 5 minutes
            return {"Authorization": f"Bearer {self._access}"}


class ImageFetcher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = httpx.Client(timeout=settings.fetch_timeout_s, follow_redirects=False)
        self.ls_url = settings.label_studio_url.rstrip("/") if settings.label_studio_url else None
        token = settings.label_studio_api_key
        self.auth = (
            LabelStudioAuth(self.ls_url, token.get_secret_value(), self.client)
            if self.ls_url and token
            else None
        )
        self._s3 = None

    def close(self) -> None:
        self.client.close()

    # -- sources ------------------------------------------------------------------------
    def _http(self, url: str, headers: dict[str, str]) -> bytes:
        limit = self.settings.max_image_bytes
        try:
            with self.client.stream("GET", url, headers=headers) as resp:
                if resp.status_code in (301, 302, 303, 307, 308):
                    # Label Studio redirects presigned storage URLs: follow once, without
                    # our token, and only to S3 or an allowed host.
                    target = urljoin(url, resp.headers.get("location", ""))
                    self._check_redirect(target)
                    return self._http(target, {})
                if resp.status_code != 200:
                    raise ImageUnreachable(f"GET {url} answered HTTP {resp.status_code}")
                declared = int(resp.headers.get("content-length") or 0)
                if declared > limit:
                    raise ImageTooLarge(
                        f"image at {url} is {declared} bytes, over SAM2_MAX_IMAGE_BYTES={limit}",
                        field="SAM2_MAX_IMAGE_BYTES",
                    )
                chunks, size = [], 0
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise ImageTooLarge(
                            f"image at {url} is over SAM2_MAX_IMAGE_BYTES={limit}",
                            field="SAM2_MAX_IMAGE_BYTES",
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise ImageUnreachable(f"cannot fetch image {url}: {exc}") from exc

    def _check_redirect(self, target: str) -> None:
        host = urlparse(target).hostname or ""
        s3_like = host.endswith(".amazonaws.com") or (
            self.settings.s3_endpoint_url
            and host == urlparse(self.settings.s3_endpoint_url).hostname
        )
        if not (s3_like or host in self.settings.allowed_image_hosts):
            raise ImageSourceRefused(
                f"Label Studio redirected the image to {host!r}, which is neither S3 nor in "
                "SAM2_ALLOWED_IMAGE_HOSTS",
                field="SAM2_ALLOWED_IMAGE_HOSTS",
            )

    def _s3_get(self, uri: str) -> bytes:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        if self._s3 is None:
            self._s3 = boto3.client("s3", endpoint_url=self.settings.s3_endpoint_url)
        parsed = urlparse(uri)
        limit = self.settings.max_image_bytes
        try:
            obj = self._s3.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))
            if obj["ContentLength"] > limit:
                obj["Body"].close()
                raise ImageTooLarge(
                    f"image {uri} is {obj['ContentLength']} bytes, over "
                    f"SAM2_MAX_IMAGE_BYTES={limit}",
                    field="SAM2_MAX_IMAGE_BYTES",
                )
            return obj["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise ImageUnreachable(f"cannot read {uri} from S3: {exc}") from exc

    def _need_ls(self, url: str) -> str:
        if not self.ls_url:
            raise ImageSourceRefused(
                f"task image {url!r} needs Label Studio to resolve it: set LABEL_STUDIO_URL "
                "and LABEL_STUDIO_API_KEY",
                field="LABEL_STUDIO_URL",
            )
        return self.ls_url

    def _ls_headers(self) -> dict[str, str]:
        return self.auth.header() if self.auth else {}

    def fetch_bytes(self, url: str, task_id: int | None) -> bytes:
        if not isinstance(url, str) or not url:
            raise ImageSourceRefused(f"task image value {url!r} is not a URL", field="data")
        if url.startswith("data:"):
            try:
                meta, payload = url.split(",", 1)
                return base64.b64decode(payload, validate=True) if ";base64" in meta else b""
            except (ValueError, binascii.Error) as exc:
                raise ImageNotDecodable(f"bad data: URI for the task image: {exc}") from exc
        scheme = urlparse(url).scheme
        if scheme == "s3":
            if self.settings.s3_direct:
                return self._s3_get(url)
            if task_id is None:
                raise ImageSourceRefused(f"{url!r} needs the task id to resolve", field="id")
            base = self._need_ls(url)
            fileuri = base64.urlsafe_b64encode(url.encode()).decode()
            return self._http(f"{base}/tasks/{task_id}/resolve/?fileuri={fileuri}",
                              self._ls_headers())
        if scheme in ("http", "https"):
            host = urlparse(url).netloc
            if self.ls_url and host == urlparse(self.ls_url).netloc:
                return self._http(url, self._ls_headers())
            if urlparse(url).hostname in self.settings.allowed_image_hosts:
                return self._http(url, {})
            raise ImageSourceRefused(
                f"image host {urlparse(url).hostname!r} is not Label Studio "
                f"({self.ls_url}) and not in SAM2_ALLOWED_IMAGE_HOSTS",
                field="SAM2_ALLOWED_IMAGE_HOSTS",
            )
        if scheme == "" and url.startswith("/"):
            return self._http(self._need_ls(url) + url, self._ls_headers())
        raise ImageSourceRefused(f"unsupported image URL {url!r}", field="data")

    # -- decoding -----------------------------------------------------------------------
    def decode(self, data: bytes) -> LoadedImage:
        limit = self.settings.max_image_pixels
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as im:
                    w, h = im.size
                    if w * h > limit:
                        raise ImageTooLarge(
                            f"image is {w}x{h} = {w * h} pixels, over "
                            f"SAM2_MAX_IMAGE_PIXELS={limit}",
                            field="SAM2_MAX_IMAGE_PIXELS",
                        )
                    im.load()
                    rgb = ImageOps.exif_transpose(im).convert("RGB")
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImageNotDecodable(f"task image is not a readable image: {exc}") from exc
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise ImageTooLarge(str(exc), field="SAM2_MAX_IMAGE_PIXELS") from exc
        return LoadedImage(key=hashlib.sha256(data).hexdigest(), rgb=np.array(rgb))

    def load(self, url: str, task_id: int | None) -> LoadedImage:
        return self.decode(self.fetch_bytes(url, task_id))
