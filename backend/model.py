"""SAM2 image predictor behind one lock, with image embeddings cached by content hash."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from backend.cache import EmbeddingCache
from backend.errors import WeightsError
from backend.settings import Settings
from backend.weights import resolve_checkpoint

log = logging.getLogger(__name__)


@dataclass
class Prompt:
    """One object to segment: keypoints (pixels, label 1 positive / 0 negative) and/or a box."""

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int32))
    box: np.ndarray | None = None  # x0, y0, x1, y1 in pixels


@dataclass
class MaskResult:
    mask: np.ndarray  # bool, H x W
    score: float


def pick_device(wanted: str) -> str:
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cuda" and not torch.cuda.is_available():
        raise WeightsError(
            "SAM2_DEVICE=cuda but torch sees no GPU: schedule on a GPU node or set "
            "SAM2_DEVICE=cpu",
            field="SAM2_DEVICE",
        )
    return wanted


class ClientGone(Exception):
    """The caller disconnected: its remaining model work is dropped."""


class NeedImage(Exception):
    """The embedding is not cached (evicted, or the cache is off): fetch the image again."""


class FairLock:
    """A FIFO lock: threads get the model in arrival order, so a request's slices interleave
    with other callers' clicks instead of one caller re-taking the lock first."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next = 0
        self._serving = 0

    def __enter__(self) -> FairLock:
        with self._cond:
            ticket = self._next
            self._next += 1
            while ticket != self._serving:
                self._cond.wait()
        return self

    def __exit__(self, *_: object) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


class Segmenter:
    """Owns the model. Model work is thread-safe: it runs under ``self.lock`` (FIFO), one
    slice of at most ``SAM2_PROMPTS_PER_PASS`` prompts at a time."""

    def __init__(self, settings: Settings) -> None:
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        self.settings = settings
        self.device = pick_device(settings.device)
        checkpoint = resolve_checkpoint(settings)
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        if checkpoint is None:
            log.warning("SAM2 runs with RANDOM weights (SAM2_ALLOW_RANDOM_WEIGHTS): tests only")
            torch.manual_seed(settings.random_seed)
        model = build_sam2(
            settings.config_file,
            ckpt_path=str(checkpoint) if checkpoint else None,
            device=self.device,
        )
        self.predictor = SAM2ImagePredictor(model)
        self.weights = "random" if checkpoint is None else settings.checkpoint_sha256[:12]
        stem = settings.config_file.rsplit("/", 1)[-1].removesuffix(".yaml")
        self.model_version = f"{stem}:{self.weights}"
        self.lock = FairLock()
        self.cache = EmbeddingCache(settings.cache_max_mb * 2**20, settings.cache_max_entries)
        self.encoder_calls = 0
        self.decoder_calls = 0
        self._encoding: dict[str, threading.Event] = {}
        self._encoding_lock = threading.Lock()
        model.image_encoder.register_forward_pre_hook(self._count_encoder)
        model.sam_mask_decoder.register_forward_pre_hook(self._count_decoder)

    def _count_encoder(self, *_: object) -> None:
        self.encoder_calls += 1

    def _count_decoder(self, *_: object) -> None:
        self.decoder_calls += 1

    def has_embedding(self, key: str) -> bool:
        """Cached or being computed right now (a caller may wait for it)."""
        with self._encoding_lock:
            return key in self.cache or key in self._encoding

    @torch.inference_mode()
    def embedding(self, key: str, image: np.ndarray | None) -> dict:
        """The image's embedding: cached, computed by another thread meanwhile (waited for, not
        computed twice), or computed here. ``image`` None: raise NeedImage unless available."""
        while True:
            cached = self.cache.get(key)
            if cached is not None:
                return cached
            with self._encoding_lock:
                event = self._encoding.get(key)
                mine = event is None
                if mine:
                    event = self._encoding[key] = threading.Event()
            if not mine:
                event.wait()
                if key in self.cache:
                    continue
                if image is None:
                    raise NeedImage(key)
                continue  # the other encode failed or was not kept: compute it here
            try:
                if image is None:
                    raise NeedImage(key)
                with self.lock:
                    p = self.predictor
                    p.set_image(image)
                    value = {"features": p._features, "hw": tuple(p._orig_hw[0])}
                self.cache.put(key, value)
                return value
            finally:
                with self._encoding_lock:
                    self._encoding.pop(key, None)
                event.set()

    def _point_at(self, value: dict) -> None:
        p = self.predictor
        p.reset_predictor()
        p._features, p._orig_hw = value["features"], [value["hw"]]
        p._is_image_set = True

    def _run_pass(self, prompts: list[Prompt]) -> list[MaskResult]:
        """One decoder pass for prompts with the same number of points and box presence."""
        n_points, has_box = len(prompts[0].points), prompts[0].box is not None
        single_click = not has_box and n_points == 1  # ambiguous: keep the best of three
        masks, scores, _ = self.predictor.predict(
            point_coords=np.stack([p.points for p in prompts]) if n_points else None,
            point_labels=np.stack([p.labels for p in prompts]) if n_points else None,
            box=np.stack([p.box for p in prompts]) if has_box else None,
            multimask_output=single_click,
        )
        if len(prompts) == 1:  # the predictor drops the batch axis of a batch of one
            masks, scores = masks[None], scores[None]
        best = np.argmax(scores, axis=1)
        return [MaskResult(mask=masks[i, b] > 0, score=float(scores[i, b]))
                for i, b in enumerate(best)]

    @torch.inference_mode()
    def segment(
        self,
        key: str,
        image: np.ndarray | None,
        prompts: list[Prompt],
        should_stop: Callable[[], bool] | None = None,
    ) -> list[MaskResult]:
        """One mask per prompt for the RGB image ``image`` whose content hash is ``key``.

        Prompts run in slices of SAM2_PROMPTS_PER_PASS under the FIFO model lock; within a
        slice, prompts of the same shape share one batched decoder pass. ``should_stop`` is
        asked before each slice: a caller that has gone costs no further model work."""
        value = self.embedding(key, image)
        out: list[MaskResult | None] = [None] * len(prompts)
        step = self.settings.prompts_per_pass
        for start in range(0, len(prompts), step):
            chunk = range(start, min(start + step, len(prompts)))
            shapes: dict[tuple[int, bool], list[int]] = defaultdict(list)
            for i in chunk:
                shapes[(len(prompts[i].points), prompts[i].box is not None)].append(i)
            with self.lock:
                if should_stop is not None and should_stop():
                    raise ClientGone
                self._point_at(value)
                for idxs in shapes.values():
                    for i, result in zip(idxs, self._run_pass([prompts[i] for i in idxs]),
                                         strict=True):
                        out[i] = result
        return out  # type: ignore[return-value]
