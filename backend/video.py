"""SAM2 video tracking for ``VideoRectangle smart="true"``: box prompts of several objects are
propagated through the next frames and answered as VideoRectangle keyframes.

One ``/predict`` call carries every prompted region of the task (Label Studio's interactive
context). Each region is one object; its last keyframe is its box prompt. The window runs from
the earliest prompted frame to ``SAM2_VIDEO_FRAMES`` frames past the latest one (clamped to the
video's end), all objects in one SAM2 inference state. States are kept per task, bounded in
bytes and count (least recently used evicted), each behind its own lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backend.errors import BackendError, BadContext, WeightsError
from backend.images import ImageFetcher
from backend.settings import Settings

log = logging.getLogger(__name__)

#: Normalization SAM2 applies to video frames (ImageNet mean/std, as sam2.utils.misc).
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


# -- errors -------------------------------------------------------------------------------
class VideoNotDecodable(BackendError):
    status, code = 415, "video_not_decodable"


class VideoTooLarge(BackendError):
    status, code = 413, "video_too_large"


class FrameOutOfRange(BackendError):
    status, code = 422, "frame_out_of_range"


class TooManyObjects(BackendError):
    status, code = 422, "too_many_objects"


# -- request ------------------------------------------------------------------------------
class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class Keyframe(_Loose):
    frame: int = Field(ge=1)
    x: float = Field(ge=-100, le=200)
    y: float = Field(ge=-100, le=200)
    width: float = Field(gt=0, le=100)
    height: float = Field(gt=0, le=100)
    enabled: bool = True
    rotation: float = 0
    time: float | None = None


class RegionValue(_Loose):
    sequence: list[Keyframe] = Field(min_length=1)
    framesCount: int | None = Field(None, ge=1)
    duration: float | None = Field(None, ge=0)
    labels: list[str] | None = None


class VideoRegion(_Loose):
    """One ``videorectangle`` region of the interactive context: one object to track."""

    id: str = Field(min_length=1)
    type: Literal["videorectangle"]
    from_name: str
    to_name: str
    value: RegionValue

    @property
    def prompt(self) -> Keyframe:
        """The object's box prompt: its last keyframe (the one the annotator just drew)."""
        return max(self.value.sequence, key=lambda k: k.frame)


def is_video_context(raw: dict[str, Any] | None) -> bool:
    """True when the interactive context holds VideoRectangle regions."""
    items = (raw or {}).get("result") or []
    return any(isinstance(i, dict) and i.get("type") == "videorectangle" for i in items)


def parse_regions(raw: dict[str, Any], max_objects: int) -> list[VideoRegion]:
    items = [i for i in raw.get("result") or [] if isinstance(i, dict)]
    others = sorted({str(i.get("type")) for i in items} - {"videorectangle"})
    if others:
        raise BadContext(
            f"params.context.result mixes videorectangle with {others}: send only the "
            "VideoRectangle regions of one Video tag",
            field="params.context.result.type",
        )
    if len(items) > max_objects:
        raise TooManyObjects(
            f"params.context.result holds {len(items)} objects, over SAM2_VIDEO_MAX_OBJECTS="
            f"{max_objects}: track fewer objects per call or raise SAM2_VIDEO_MAX_OBJECTS",
            field="params.context.result",
        )
    regions = []
    for n, item in enumerate(items):
        try:
            regions.append(VideoRegion.model_validate(item))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = f"params.context.result[{n}]." + ".".join(str(p) for p in err["loc"])
            raise BadContext(
                f"{where}: {err['msg']} (got {err.get('input')!r}); send Label Studio's "
                "videorectangle regions: value.sequence of {frame, x, y, width, height} "
                "keyframes in percent, frames from 1",
                field=where,
            ) from exc
    ids = [r.id for r in regions]
    if len(set(ids)) != len(ids):
        raise BadContext(f"region ids repeat in {ids}: one region per object",
                         field="params.context.result.id")
    return regions


@dataclass
class VideoConfig:
    """Video tags (name -> task data key) and VideoRectangle tags (name -> Video name)."""

    videos: dict[str, str]
    rectangles: dict[str, str]

    @classmethod
    def parse(cls, xml: str | None) -> VideoConfig:
        from backend.protocol import parse_label_config

        root = parse_label_config(xml)
        videos = {el.get("name"): el.get("value", "").lstrip("$") for el in root.iter("Video")
                  if el.get("name") and el.get("value")}
        rects = {el.get("name"): el.get("toName") for el in root.iter("VideoRectangle")
                 if el.get("name") and el.get("toName")}
        return cls(videos=videos, rectangles=rects)

    def data_key(self, region: VideoRegion) -> str:
        if self.rectangles.get(region.from_name) != region.to_name:
            raise BadContext(
                f"from_name={region.from_name!r} is not a VideoRectangle tag with toName="
                f"{region.to_name!r} in the label config (known: {self.rectangles})",
                field="params.context.result.from_name",
            )
        if region.to_name not in self.videos:
            raise BadContext(
                f"to_name={region.to_name!r} is not a Video tag of the label config "
                f"(known: {sorted(self.videos)})",
                field="params.context.result.to_name",
            )
        return self.videos[region.to_name]


# -- frames -------------------------------------------------------------------------------
@dataclass
class VideoInfo:
    frames: int  # as the container reports it
    fps: float
    width: int
    height: int


@contextlib.contextmanager
def _capture(data: bytes) -> Iterator[Any]:
    """An OpenCV capture reading ``data`` from memory (no PHI on disk). The stream object
    must outlive the capture: OpenCV keeps no reference to it."""
    import cv2

    stream = io.BytesIO(data)
    cap = cv2.VideoCapture(stream, cv2.CAP_FFMPEG, [])
    try:
        if not cap.isOpened():
            raise VideoNotDecodable(
                "task video is not a readable video (FFmpeg could not open it): give the "
                "Video tag an MP4, WebM or AVI file", field="data")
        yield cap
    finally:
        cap.release()
        stream.close()


def probe(data: bytes, max_pixels: int) -> VideoInfo:
    import cv2

    with _capture(data) as cap:
        info = VideoInfo(frames=int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
                         fps=float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
                         width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                         height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    if info.frames < 1 or info.width < 1 or info.height < 1:
        raise VideoNotDecodable(f"task video has no decodable frames ({info})", field="data")
    if info.width * info.height > max_pixels:
        raise VideoTooLarge(
            f"video frames are {info.width}x{info.height}, over SAM2_MAX_IMAGE_PIXELS="
            f"{max_pixels}", field="SAM2_MAX_IMAGE_PIXELS")
    return info


def decode_window(data: bytes, first: int, last: int, size: int) -> torch.Tensor:
    """Frames ``first..last`` (0-based, inclusive) as RGB uint8, resized to size x size:
    a (n, 3, size, size) tensor. Raises FrameOutOfRange when the video ends earlier."""
    import cv2

    out = torch.empty((last - first + 1, 3, size, size), dtype=torch.uint8)
    with _capture(data) as cap:
        for idx in range(last + 1):
            ok = cap.grab()
            if not ok:
                raise FrameOutOfRange(
                    f"the video ends after frame {idx} (1-based), before frame {last + 1} of "
                    "the tracking window: prompt on an earlier frame", field="params.context")
            if idx < first:
                continue
            ok, bgr = cap.retrieve()
            if not ok:
                raise VideoNotDecodable(f"frame {idx + 1} of the task video does not decode",
                                        field="data")
            rgb = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (size, size),
                             interpolation=cv2.INTER_LINEAR)
            out[idx - first] = torch.from_numpy(rgb).permute(2, 0, 1)
    return out


class NormalizedFrames:
    """Frames stored as uint8 (4x smaller than SAM2's float32 copy), normalized on access:
    what SAM2's inference state indexes as ``state["images"][i]``."""

    def __init__(self, frames: torch.Tensor) -> None:
        self.frames = frames

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def __getitem__(self, idx: int) -> torch.Tensor:
        return (self.frames[idx].float() / 255.0 - _MEAN) / _STD


class InferenceState(dict):
    """SAM2's inference state, keeping the image features of the frames it encodes.

    SAM2 1.1.0 replaces ``state["cached_features"]`` with the latest frame's features on
    each encoder pass; here the new frame is added instead while ``features_budget`` bytes
    allow, so a later call on the same window (the annotator moves a box and tracks again)
    skips the image encoder on those frames. Past the budget the kept frames stay and
    the others are recomputed when needed, as SAM2 does: memory never grows past it."""

    features_budget = 0
    features_bytes = 0

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "cached_features" and value and key in self:
            kept = super().__getitem__(key)
            size = tensor_bytes(value)
            if kept and self.features_bytes + size > self.features_budget:
                return  # over budget: keep the frames already kept
            self.features_bytes = (self.features_bytes if kept else 0) + size
            value = {**kept, **value}
        super().__setitem__(key, value)


def new_inference_state(frames: torch.Tensor, height: int, width: int,
                        device: torch.device) -> InferenceState:
    """An inference state for SAM2VideoPredictor (sam2 1.1.0 layout) over in-memory frames;
    ``init_state`` only reads MP4 through decord or JPEG folders from disk."""
    return InferenceState({
        "images": NormalizedFrames(frames),
        "num_frames": len(frames),
        "offload_video_to_cpu": True,
        "offload_state_to_cpu": False,
        "video_height": height,
        "video_width": width,
        "device": device,
        "storage_device": device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    })


def tensor_bytes(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes held by the tensors inside ``obj`` (dicts, lists, NormalizedFrames), each
    storage counted once."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        ptr = obj.untyped_storage().data_ptr()
        if ptr in seen:
            return 0
        seen.add(ptr)
        return obj.untyped_storage().nbytes()
    if isinstance(obj, NormalizedFrames):
        return tensor_bytes(obj.frames, seen)
    if isinstance(obj, dict):
        return sum(tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v, seen) for v in obj)
    return 0


# -- state cache --------------------------------------------------------------------------
@dataclass
class StateEntry:
    """One task's inference state; ``lock`` is held for all work on ``state``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    key: tuple[str, int, int] | None = None  # (video sha256, first frame, last frame)
    state: InferenceState | None = None
    nbytes: int = 0


class StateCache:
    """Per-task inference states, least recently used evicted past ``max_bytes`` or
    ``max_entries``. The registry lock only guards the dict, never model work."""

    def __init__(self, max_bytes: int, max_entries: int) -> None:
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self._entries: OrderedDict[str, StateEntry] = OrderedDict()
        self._lock = threading.Lock()
        self.evictions = 0

    def entry(self, task_key: str) -> StateEntry:
        with self._lock:
            entry = self._entries.get(task_key)
            if entry is None:
                entry = self._entries[task_key] = StateEntry()
            self._entries.move_to_end(task_key)
            return entry

    def account(self, task_key: str, entry: StateEntry, nbytes: int) -> None:
        """Record ``entry``'s size and evict other tasks' states until the bounds hold."""
        with self._lock:
            entry.nbytes = nbytes
            if self._entries.get(task_key) is not entry:
                return  # evicted meanwhile: the caller's reference dies with its request
            while len(self._entries) > 1 and (
                len(self._entries) > self.max_entries
                or sum(e.nbytes for e in self._entries.values()) > self.max_bytes
            ):
                old_key, old = next(iter(self._entries.items()))
                if old is entry:
                    break
                del self._entries[old_key]
                self.evictions += 1
                log.info("video state of task %s evicted (%d bytes)", old_key, old.nbytes)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"states": len(self._entries), "evictions": self.evictions,
                    "bytes": sum(e.nbytes for e in self._entries.values())}


# -- tracking -----------------------------------------------------------------------------
@dataclass
class Track:
    """One object's boxes (pixels, x0 y0 x1 y1) by 0-based frame; None where it is lost."""

    boxes: dict[int, tuple[int, int, int, int] | None]


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


class VideoTracker:
    """SAM2's video predictor (built on first use) and the per-task inference states."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.states = StateCache(settings.video_state_max_mb * 2**20, settings.video_max_states)
        # same sources, authentication and redirect rules as images; its own size limit
        self.fetcher = ImageFetcher(
            settings.model_copy(update={"max_image_bytes": settings.video_max_bytes}))
        self._predictor = None
        self._build_lock = threading.Lock()
        self.frames_propagated = 0
        self.encoder_calls = 0  # image encoder passes of the video predictor
        self._count_lock = threading.Lock()
        self.model_version: str | None = None

    def close(self) -> None:
        self.fetcher.close()

    @property
    def predictor(self):
        with self._build_lock:
            if self._predictor is None:
                self._predictor = self._build()
            return self._predictor

    def _build(self):
        from sam2.build_sam import build_sam2_video_predictor

        from backend.model import pick_device
        from backend.weights import resolve_checkpoint

        checkpoint = resolve_checkpoint(self.settings)
        if checkpoint is None:
            log.warning("SAM2 video runs with RANDOM weights (SAM2_ALLOW_RANDOM_WEIGHTS)")
            torch.manual_seed(self.settings.random_seed)
        device = pick_device(self.settings.device)
        predictor = build_sam2_video_predictor(
            self.settings.config_file, ckpt_path=str(checkpoint) if checkpoint else None,
            device=device)
        if predictor.device.type != "cuda":
            # SAM2 stores memories as bfloat16 and relies on CUDA autocast to mix them with
            # float32 features; on CPU they are widened back (exact) before memory attention.
            predictor.memory_attention.register_forward_pre_hook(_widen_memory, with_kwargs=True)
        predictor.image_encoder.register_forward_pre_hook(self._count_encoder)
        weights = "random" if checkpoint is None else self.settings.checkpoint_sha256[:12]
        stem = self.settings.config_file.rsplit("/", 1)[-1].removesuffix(".yaml")
        self.model_version = f"{stem}-video:{weights}"
        return predictor

    def _count_encoder(self, *_: object) -> None:
        with self._count_lock:
            self.encoder_calls += 1

    def stats(self) -> dict[str, Any]:
        return {**self.states.stats(), "frames_propagated": self.frames_propagated,
                "encoder_calls": self.encoder_calls, "loaded": self._predictor is not None}

    def _state_for(self, entry: StateEntry, key: tuple[str, int, int], data: bytes,
                   info: VideoInfo) -> InferenceState:
        """The entry's state for ``key`` (reused when the video and window are the same)."""
        if entry.key == key and entry.state is not None:
            return entry.state
        entry.state, entry.key = None, None  # drop the old window before decoding a new one
        predictor = self.predictor
        size = int(predictor.image_size)
        n = key[2] - key[1] + 1
        need = n * 3 * size * size
        if need > self.states.max_bytes:
            raise VideoTooLarge(
                f"a {n}-frame window needs {need // 2**20} MiB of frames, over "
                f"SAM2_VIDEO_STATE_MAX_MB={self.settings.video_state_max_mb}: lower "
                "SAM2_VIDEO_FRAMES or raise SAM2_VIDEO_STATE_MAX_MB",
                field="SAM2_VIDEO_STATE_MAX_MB")
        frames = decode_window(data, key[1], key[2], size)
        entry.state = new_inference_state(frames, info.height, info.width, predictor.device)
        # image features kept for reuse: at most 3/4 of what the bound leaves past the
        # frames (SAM2's per-object memories take the rest)
        entry.state.features_budget = (self.states.max_bytes - frames.nbytes) * 3 // 4
        entry.key = key
        return entry.state

    @torch.inference_mode()
    def track(self, task_key: str, data: bytes, info: VideoInfo,
              prompts: list[tuple[int, np.ndarray]], first: int, last: int) -> list[Track]:
        """Propagate every ``(frame, box)`` prompt (0-based frame, pixel box) through frames
        ``first..last``; one Track per prompt, holding the frames from its prompt on."""
        predictor = self.predictor
        key = (hashlib.sha256(data).hexdigest(), first, last)
        entry = self.states.entry(task_key)
        tracks = [Track(boxes={}) for _ in prompts]
        with entry.lock:
            state = self._state_for(entry, key, data, info)
            predictor.reset_state(state)
            autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                        if predictor.device.type == "cuda" else contextlib.nullcontext())
            with autocast:
                for obj_id, (frame, box) in enumerate(prompts):
                    predictor.add_new_points_or_box(state, frame_idx=frame - first,
                                                    obj_id=obj_id, box=box)
                count = 0
                for rel, obj_ids, logits in predictor.propagate_in_video(
                        state, start_frame_idx=0, max_frame_num_to_track=last - first):
                    count += 1
                    masks = (logits[:, 0] > 0.0).cpu().numpy()
                    for i, obj_id in enumerate(obj_ids):
                        if rel + first >= prompts[obj_id][0]:
                            tracks[obj_id].boxes[rel + first] = mask_box(masks[i])
            nbytes = tensor_bytes(state)
        self.states.account(task_key, entry, nbytes)
        with self._count_lock:
            self.frames_propagated += count
        return tracks


def _widen_memory(_module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    for name in ("memory", "memory_pos"):
        value = kwargs.get(name)
        if isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16:
            kwargs[name] = value.float()
    return args, kwargs


# -- answer -------------------------------------------------------------------------------
def keyframes(region: VideoRegion, track: Track, width: int, height: int,
              fps: float) -> list[dict[str, Any]]:
    """The region's own keyframes up to its prompt, then one per tracked frame. Where the
    object is lost the previous keyframe ends its lifespan (enabled false); it starts again
    where the object comes back."""
    prompt = region.prompt.frame
    seq = [k.model_dump(exclude_none=True) for k in region.value.sequence if k.frame <= prompt]
    seq.sort(key=lambda k: k["frame"])
    for k in seq:
        k.setdefault("time", k["frame"] / fps)
    for frame0 in sorted(track.boxes):
        frame = frame0 + 1
        if frame <= prompt:
            continue
        box = track.boxes[frame0]
        if box is None:
            if seq and seq[-1]["enabled"]:
                seq[-1]["enabled"] = False
            continue
        x0, y0, x1, y1 = box
        seq.append({
            "frame": frame,
            "x": round(100.0 * x0 / width, 4),
            "y": round(100.0 * y0 / height, 4),
            "width": round(100.0 * (x1 - x0) / width, 4),
            "height": round(100.0 * (y1 - y0) / height, 4),
            "enabled": True,
            "rotation": 0,
            "time": frame / fps,
        })
    return seq


def predict_video(tracker: VideoTracker, req: Any) -> dict[str, Any]:
    """Answer a ``/predict`` call whose context holds ``videorectangle`` regions."""
    settings = tracker.settings
    regions = parse_regions(req.params.context, settings.video_max_objects)
    config = VideoConfig.parse(req.label_config)
    to_names = {r.to_name for r in regions}
    if len(to_names) != 1:
        raise BadContext(f"context refers to several videos {sorted(to_names)}; send one "
                         "Video tag per call", field="params.context.result.to_name")
    keys = {config.data_key(r) for r in regions}
    key = keys.pop()
    task = req.tasks[0]
    if key not in task.data:
        raise BadContext(f"task {task.id} has no data.{key} (the value of Video "
                         f"{regions[0].to_name!r})", field=f"tasks[0].data.{key}")
    if tracker._predictor is None and settings.checkpoint is None and \
            not settings.allow_random_weights:
        raise WeightsError("no SAM2 checkpoint configured (SAM2_CHECKPOINT)",
                           field="SAM2_CHECKPOINT")
    data = tracker.fetcher.fetch_bytes(task.data[key], task.id)
    info = probe(data, settings.max_image_pixels)
    declared = regions[0].value.framesCount
    if declared and abs(declared - info.frames) > max(1, info.frames // 20):
        raise BadContext(
            f"Label Studio counts {declared} frames but the video has {info.frames} "
            f"({info.fps:g} fps): set framerate=\"{info.fps:g}\" on the Video tag so frame "
            "numbers match", field="label_config")
    for r in regions:
        if r.prompt.frame > info.frames:
            raise FrameOutOfRange(
                f"region {r.id} prompts frame {r.prompt.frame}, past the video's last frame "
                f"{info.frames}: draw the box on a frame of the video",
                field="params.context.result.value.sequence.frame")
    first = min(r.prompt.frame for r in regions) - 1
    last = min(info.frames, max(r.prompt.frame for r in regions) + settings.video_frames) - 1
    prompts = []
    for r in regions:
        k = r.prompt
        x0, y0 = k.x * info.width / 100.0, k.y * info.height / 100.0
        x1 = min(x0 + k.width * info.width / 100.0, info.width)
        y1 = min(y0 + k.height * info.height / 100.0, info.height)
        prompts.append((k.frame - 1, np.array([max(x0, 0), max(y0, 0), x1, y1], np.float32)))
    task_key = f"{task.id}" if task.id is not None else f"sha:{hashlib.sha256(data).hexdigest()}"
    tracks = tracker.track(task_key, data, info, prompts, first, last)
    value = regions[0].value
    duration = value.duration or (info.frames / info.fps if info.fps else 0.0)
    fps = (value.framesCount / value.duration if value.framesCount and value.duration
           else info.fps or 25.0)
    results, coverage = [], []
    for r, t in zip(regions, tracks, strict=True):
        seq = keyframes(r, t, info.width, info.height, fps)
        tracked = [f for f in t.boxes if f + 1 > r.prompt.frame]
        found = sum(1 for f in tracked if t.boxes[f] is not None)
        coverage.append(found / len(tracked) if tracked else 1.0)
        out_value: dict[str, Any] = {"framesCount": value.framesCount or info.frames,
                                     "duration": duration, "sequence": seq}
        if r.value.labels:
            out_value["labels"] = list(r.value.labels)
        results.append({
            "id": r.id,
            "from_name": r.from_name,
            "to_name": r.to_name,
            "type": "videorectangle",
            "origin": "manual",
            "value": out_value,
            "score": coverage[-1],
        })
    return {"results": [{"result": results, "score": sum(coverage) / len(coverage),
                         "model_version": tracker.model_version}]}
