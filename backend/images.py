"""Task images: fetched through Label Studio (token), straight from S3, or inline data URIs;
bounded in bytes and pixels, EXIF-oriented, converted to RGB."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
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
                    raise ImageUnreachable(
                        f"cannot reach Label Studio at {url}: {type(exc).__name__}"
                    ) from exc
                if resp.status_code != 200:
                    raise ImageUnreachable(
                        f"Label Studio refused LABEL_STUDIO_API_KEY (HTTP {resp.status_code} "
                        "from /api/token/refresh/): create a new personal access token",
                        field="LABEL_STUDIO_API_KEY",
                    )
                self._access = resp.json()["access"]
                self._expires = time.monotonic() + 240  # access tokens live 5 minutes
            return {"Authorization": f"Bearer {self._access}"}


#: Label Studio 1.23.2 paths that serve task data (uploads, the storage proxy, local files).
#: Nothing else on Label Studio is fetched with the backend's token: never /api/.
LABEL_STUDIO_DATA_PATHS = re.compile(
    r"^/(data/upload/[^?#]+"
    r"|storage-data/uploaded/"
    r"|data/local-files/"
    r"|(tasks|projects)/[0-9]+/(resolve|presign)/)"
)


def describe(url: str) -> str:
    """A URL for messages: no query (presigned signatures), no userinfo, bounded length."""
    if url.startswith("data:"):
        return f"data: URI ({len(url)} characters)"
    try:
        p = urlparse(url)
        text = f"{p.scheme}://{p.hostname or ''}{p.path}" if p.scheme else p.path
    except ValueError:
        text = url.split("?", 1)[0]
    return text if len(text) <= 120 else text[:117] + "..."


def check_url(url: str) -> tuple[str, str, str]:
    """(scheme, hostname, netloc) of an absolute or relative URL, or a 422 naming the value."""
    try:
        p = urlparse(url)
        _ = p.port  # raises ValueError for a port that is not a number or out of range
    except ValueError as exc:
        raise ImageSourceRefused(
            f"task image URL {describe(url)!r} is not a valid URL ({exc}): fix the task data",
            field="data",
        ) from exc
    return p.scheme, p.hostname or "", p.netloc


class ImageFetcher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=8)
        self.client = httpx.Client(
            timeout=settings.fetch_timeout_s, follow_redirects=False, limits=limits
        )
        self.ls_url = settings.label_studio_url.rstrip("/") if settings.label_studio_url else None
        token = settings.label_studio_api_key
        self.auth = (
            LabelStudioAuth(self.ls_url, token.get_secret_value(), self.client)
            if self.ls_url and token
            else None
        )
        self._s3 = None
        self._decodes = threading.BoundedSemaphore(settings.max_decodes)
        self._decode_lock = threading.Lock()
        self.decoding = 0
        self.decodes_peak = 0

    def close(self) -> None:
        self.client.close()

    # -- sources ------------------------------------------------------------------------
    def _http(self, url: str, headers: dict[str, str]) -> bytes:
        """GET with one total deadline, redirects followed one at a time (each closed before the
        next, each target re-checked, at most SAM2_MAX_REDIRECTS) and the byte limit."""
        limit, budget = self.settings.max_image_bytes, self.settings.fetch_timeout_s
        deadline = time.monotonic() + budget
        late = ImageUnreachable(
            f"image {describe(url)} did not arrive within SAM2_FETCH_TIMEOUT_S={budget:g} s",
            field="SAM2_FETCH_TIMEOUT_S",
        )
        for _hop in range(self.settings.max_redirects + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise late
            try:
                with self.client.stream("GET", url, headers=headers,
                                        timeout=httpx.Timeout(remaining)) as resp:
                    if resp.status_code in (301, 302, 303, 307, 308):
                        # a presigned storage URL: follow without our token, S3/allowed only
                        target = urljoin(url, resp.headers.get("location", ""))
                        self._check_redirect(target)
                        url, headers = target, {}
                        continue
                    if resp.status_code != 200:
                        raise ImageUnreachable(
                            f"GET {describe(url)} answered HTTP {resp.status_code}"
                        )
                    declared = int(resp.headers.get("content-length") or 0)
                    if declared > limit:
                        raise ImageTooLarge(
                            f"image at {describe(url)} is {declared} bytes, over "
                            f"SAM2_MAX_IMAGE_BYTES={limit}",
                            field="SAM2_MAX_IMAGE_BYTES",
                        )
                    chunks, size = [], 0
                    for chunk in resp.iter_bytes():
                        size += len(chunk)
                        if size > limit:
                            raise ImageTooLarge(
                                f"image at {describe(url)} is over SAM2_MAX_IMAGE_BYTES={limit}",
                                field="SAM2_MAX_IMAGE_BYTES",
                            )
                        if time.monotonic() > deadline:
                            raise late
                        chunks.append(chunk)
                    return b"".join(chunks)
            except httpx.TimeoutException as exc:
                raise late from exc
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise ImageUnreachable(
                    f"cannot fetch image {describe(url)}: {type(exc).__name__}"
                ) from exc
        raise ImageUnreachable(
            f"image {describe(url)} redirected more than SAM2_MAX_REDIRECTS="
            f"{self.settings.max_redirects} times",
            field="SAM2_MAX_REDIRECTS",
        )

    def _check_redirect(self, target: str) -> None:
        scheme, host, _ = check_url(target)
        s3_like = host.endswith(".amazonaws.com") or (
            self.settings.s3_endpoint_url
            and host == urlparse(self.settings.s3_endpoint_url).hostname
        )
        if scheme not in ("http", "https") or not (
            s3_like or host in self.settings.allowed_image_hosts
        ):
            raise ImageSourceRefused(
                f"the image source redirected to {host!r}, which is neither S3 nor in "
                "SAM2_ALLOWED_IMAGE_HOSTS",
                field="SAM2_ALLOWED_IMAGE_HOSTS",
            )

    def _s3_get(self, uri: str) -> bytes:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        if self._s3 is None:
            from botocore.config import Config

            budget = self.settings.fetch_timeout_s
            self._s3 = boto3.client(
                "s3", endpoint_url=self.settings.s3_endpoint_url,
                config=Config(connect_timeout=budget, read_timeout=budget,
                              retries={"max_attempts": 2}),
            )
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

    def _ls_data(self, url: str) -> bytes:
        """A Label Studio data path, fetched with the token; anything else is refused."""
        path = urlparse(url).path
        lowered = url.lower()
        if (not LABEL_STUDIO_DATA_PATHS.match(path) or ".." in path or "%2e" in lowered
                or "%2f" in lowered or "\\" in url):
            raise ImageSourceRefused(
                f"{describe(url)!r} is not a Label Studio data path (uploads /data/upload/, "
                "storage proxy /tasks/<id>/resolve/, /storage-data/uploaded/): the backend "
                "fetches nothing else with its Label Studio token",
                field="data",
            )
        return self._http(url, self._ls_headers())

    def _data_uri(self, url: str) -> bytes:
        limit = self.settings.max_image_bytes
        meta, sep, payload = url.partition(",")
        if len(payload) * 3 // 4 > limit + 3:
            raise ImageTooLarge(
                f"inline data: image is about {len(payload) * 3 // 4} bytes, over "
                f"SAM2_MAX_IMAGE_BYTES={limit}",
                field="SAM2_MAX_IMAGE_BYTES",
            )
        if not sep or ";base64" not in meta:
            raise ImageNotDecodable("the task image data: URI is not base64-encoded")
        try:
            data = base64.b64decode(payload, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise ImageNotDecodable(f"bad data: URI for the task image: {exc}") from exc
        if len(data) > limit:
            raise ImageTooLarge(
                f"inline data: image is {len(data)} bytes, over SAM2_MAX_IMAGE_BYTES={limit}",
                field="SAM2_MAX_IMAGE_BYTES",
            )
        return data

    def fetch_bytes(self, url: str, task_id: int | None) -> bytes:
        if not isinstance(url, str) or not url:
            raise ImageSourceRefused(
                f"task image value {str(url)[:80]!r} is not a URL", field="data"
            )
        if url.startswith("data:"):
            return self._data_uri(url)
        scheme, hostname, netloc = check_url(url)
        if scheme == "s3":
            if self.settings.s3_direct:
                return self._s3_get(url)
            if task_id is None:
                raise ImageSourceRefused(f"{url!r} needs the task id to resolve", field="id")
            base = self._need_ls(url)
            fileuri = base64.urlsafe_b64encode(url.encode()).decode()
            return self._ls_data(f"{base}/tasks/{int(task_id)}/resolve/?fileuri={fileuri}")
        if scheme in ("http", "https"):
            if self.ls_url and netloc == urlparse(self.ls_url).netloc:
                return self._ls_data(url)
            if hostname in self.settings.allowed_image_hosts:
                return self._http(url, {})
            raise ImageSourceRefused(
                f"image host {hostname!r} is not Label Studio "
                f"({self.ls_url}) and not in SAM2_ALLOWED_IMAGE_HOSTS",
                field="SAM2_ALLOWED_IMAGE_HOSTS",
            )
        if scheme == "" and url.startswith("/") and not url.startswith("//"):
            return self._ls_data(self._need_ls(url) + url)
        raise ImageSourceRefused(f"unsupported image URL {describe(url)!r}", field="data")

    # -- decoding -----------------------------------------------------------------------
    def decode(self, data: bytes) -> LoadedImage:
        """Decode under the SAM2_MAX_DECODES bound: a decoded image can be 100x its file."""
        with self._decodes:
            with self._decode_lock:
                self.decoding += 1
                self.decodes_peak = max(self.decodes_peak, self.decoding)
            try:
                return self._decode(data)
            finally:
                with self._decode_lock:
                    self.decoding -= 1

    def _decode(self, data: bytes) -> LoadedImage:
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
