"""Task images to embeddings, once: a click finds the embedding a task-open prewarm made.

Label Studio calls ``/predict`` without prompts each time a task opens. The backend answers at
once and encodes that task's image in the background. A click on the same image meanwhile
waits for that work instead of fetching and encoding the image a second time; later clicks
skip the download too, through a short-lived memo of image URL -> content hash.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from backend.errors import BackendError
from backend.images import ImageFetcher
from backend.model import NeedImage, Segmenter
from backend.settings import Settings

log = logging.getLogger(__name__)

MEMO_ENTRIES = 4096


@dataclass
class ImageRef:
    key: str  # content sha256
    width: int
    height: int
    rgb: np.ndarray | None  # None when the embedding is (being) cached: no decode needed


class ImageResolver:
    """URL -> content hash memo, per-URL in-flight deduplication, and background prewarm."""

    def __init__(self, settings: Settings, fetcher: ImageFetcher) -> None:
        self.settings, self.fetcher = settings, fetcher
        self._memo: OrderedDict[str, tuple[str, int, int, float]] = OrderedDict()
        self._inflight: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prewarm")
        self._queued = 0
        self.counts = {"scheduled": 0, "encoded": 0, "already_cached": 0, "failed": 0,
                       "skipped": 0, "memo_hits": 0, "waited": 0}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _url_key(url: str) -> str:
        return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()

    def _memo_get(self, ukey: str, segmenter: Segmenter) -> ImageRef | None:
        with self._lock:
            hit = self._memo.get(ukey)
            if hit is None or time.monotonic() - hit[3] > self.settings.image_memo_ttl_s:
                return None
            self._memo.move_to_end(ukey)
        key, width, height, _ = hit
        return ImageRef(key, width, height, None) if segmenter.has_embedding(key) else None

    def _remember(self, ukey: str, ref: ImageRef) -> None:
        if self.settings.image_memo_ttl_s <= 0:
            return
        with self._lock:
            self._memo[ukey] = (ref.key, ref.width, ref.height, time.monotonic())
            self._memo.move_to_end(ukey)
            while len(self._memo) > MEMO_ENTRIES:
                self._memo.popitem(last=False)

    def _claim(self, ukey: str) -> threading.Event | None:
        """Our event if we are first on this URL; None after waiting for whoever was."""
        with self._lock:
            event = self._inflight.get(ukey)
            if event is None:
                self._inflight[ukey] = threading.Event()
                return self._inflight[ukey]
        self.counts["waited"] += 1
        event.wait()
        return None

    def _release(self, ukey: str) -> None:
        with self._lock:
            event = self._inflight.pop(ukey, None)
        if event is not None:
            event.set()

    def resolve(self, url: str, task_id: int | None, segmenter: Segmenter,
                *, force: bool = False) -> ImageRef:
        """The image behind ``url``; without pixels when its embedding is cached or in work."""
        ukey = self._url_key(url)
        while True:
            if not force and (ref := self._memo_get(ukey, segmenter)) is not None:
                self.counts["memo_hits"] += 1
                return ref
            if self._claim(ukey) is not None:
                break  # ours to load; after waiting for another thread, look again
        try:
            loaded = self.fetcher.load(url, task_id)
            ref = ImageRef(loaded.key, loaded.width, loaded.height, loaded.rgb)
            self._remember(ukey, ref)
            return ref
        finally:
            self._release(ukey)

    def embed(self, url: str, task_id: int | None, segmenter: Segmenter) -> str:
        """Fetch, decode and encode ``url`` while holding its in-flight slot, so a click on
        the same URL waits for the embedding rather than computing it again."""
        ukey = self._url_key(url)
        if self._memo_get(ukey, segmenter) is not None:
            return "already_cached"
        if self._claim(ukey) is None:
            return "already_cached"
        try:
            loaded = self.fetcher.load(url, task_id)
            outcome = "already_cached" if loaded.key in segmenter.cache else "encoded"
            segmenter.embedding(loaded.key, loaded.rgb)
            self._remember(ukey, ImageRef(loaded.key, loaded.width, loaded.height, None))
            return outcome
        finally:
            self._release(ukey)

    def schedule(self, jobs: list[tuple[str, int | None]], segmenter: Segmenter) -> int:
        """Queue background encodes, at most SAM2_PREWARM_MAX_TASKS waiting and never more
        than the cache holds. Returns how many were queued."""
        bound = min(self.settings.prewarm_max_tasks, self.settings.cache_max_entries)
        queued = 0
        for url, task_id in jobs:
            with self._lock:
                if self._queued >= bound:
                    self.counts["skipped"] += 1
                    continue
                self._queued += 1
            self.counts["scheduled"] += 1
            self._pool.submit(self._run, url, task_id, segmenter)
            queued += 1
        return queued

    def _run(self, url: str, task_id: int | None, segmenter: Segmenter) -> None:
        try:
            self.counts[self.embed(url, task_id, segmenter)] += 1
        except BackendError as exc:
            self.counts["failed"] += 1
            log.warning("prewarm of task %s failed: %s: %s", task_id, exc.code, exc.message)
        except NeedImage:  # pragma: no cover - embed always passes pixels
            self.counts["failed"] += 1
        except Exception:
            self.counts["failed"] += 1
            log.exception("prewarm of task %s failed", task_id)
        finally:
            with self._lock:
                self._queued -= 1
