"""SAM2 image predictor behind one lock, with image embeddings cached by content hash."""

from __future__ import annotations

import logging
import threading
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


class Segmenter:
    """Owns the model. ``segment`` is thread-safe: model work runs under ``self.lock``."""

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
        self.lock = threading.Lock()
        self.cache = EmbeddingCache(settings.cache_max_mb * 2**20, settings.cache_max_entries)
        self.encoder_calls = 0
        model.image_encoder.register_forward_pre_hook(self._count_encoder)

    def _count_encoder(self, *_: object) -> None:
        self.encoder_calls += 1

    def _load_image(self, key: str, image: np.ndarray) -> None:
        """Point the predictor at ``image``: cached embedding, else run the image encoder."""
        cached = self.cache.get(key)
        p = self.predictor
        if cached is not None:
            p.reset_predictor()
            p._features, p._orig_hw = cached["features"], [cached["hw"]]
            p._is_image_set = True
            return
        p.set_image(image)
        self.cache.put(key, {"features": p._features, "hw": tuple(p._orig_hw[0])})

    @torch.inference_mode()
    def segment(self, key: str, image: np.ndarray, prompts: list[Prompt]) -> list[MaskResult]:
        """One mask per prompt for the RGB image ``image`` whose content hash is ``key``."""
        out: list[MaskResult] = []
        with self.lock:
            self._load_image(key, image)
            for prompt in prompts:
                has_points = len(prompt.points) > 0
                single_click = prompt.box is None and len(prompt.points) == 1
                masks, scores, _ = self.predictor.predict(
                    point_coords=prompt.points if has_points else None,
                    point_labels=prompt.labels if has_points else None,
                    box=prompt.box,
                    multimask_output=single_click,  # one click is ambiguous: keep the best
                )
                best = int(np.argmax(scores))
                out.append(MaskResult(mask=masks[best] > 0, score=float(scores[best])))
        return out
