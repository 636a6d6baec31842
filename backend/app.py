"""FastAPI app speaking Label Studio's ML backend protocol (/health, /setup, /predict, /webhook).

Model work runs in worker threads and is serialized by the segmenter's lock; /health never
touches the lock, so it answers while a long encoder pass is running.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.auth import GuardMiddleware, load_credentials
from backend.errors import BackendError, BadContext, TooManyPrompts, WeightsError
from backend.images import ImageFetcher
from backend.model import ClientGone, NeedImage, Segmenter
from backend.prewarm import ImageResolver
from backend.protocol import (
    LabelConfig,
    PredictRequest,
    SetupRequest,
    brush_result,
    build_groups,
    parse_context,
)
from backend.settings import Settings
from backend.video import VideoTracker, is_video_context, predict_video

log = logging.getLogger(__name__)


class State:
    """Process state: the model (or why it is unavailable) and counters for /health."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.segmenter: Segmenter | None = None
        self.model_error: WeightsError | None = None
        self.fetcher = ImageFetcher(settings)
        self.images = ImageResolver(settings, self.fetcher)
        self.video = VideoTracker(settings)  # SAM2 video predictor, built on first use
        self.counts = {"setup": 0, "predict": 0, "webhook": 0, "errors": 0, "dropped": 0}
        self._count_lock = threading.Lock()

    def load(self) -> None:
        try:
            self.segmenter = Segmenter(self.settings)
        except WeightsError as exc:
            log.error("model unavailable: %s", exc.message)
            self.model_error = exc

    def bump(self, name: str) -> None:
        with self._count_lock:
            self.counts[name] += 1

    def require_model(self) -> Segmenter:
        if self.segmenter is None:
            raise self.model_error or WeightsError("model is still loading")
        return self.segmenter


def _json_depth(value: Any, limit: int) -> int:
    """Nesting depth of parsed JSON, walked without recursion; stops past ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_predict_body(raw: bytes, settings: Settings) -> PredictRequest:
    """The /predict body, or a 422 in the documented shape (bad JSON, too deep, bad fields)."""
    limit = settings.max_json_depth
    try:
        body = json.loads(raw)
    except RecursionError as exc:
        raise BadContext(f"request body is nested deeper than {limit} levels",
                         field="body") from exc
    except ValueError as exc:
        raise BadContext(f"request body is not JSON: {exc}", field="body") from exc
    if _json_depth(body, limit) > limit:
        raise BadContext(
            f"request body is nested deeper than {limit} levels (SAM2_MAX_JSON_DEPTH)",
            field="body",
        )
    try:
        return PredictRequest.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise BadContext(f"{where}: {err['msg']}", field=where) from exc


def _prewarm(state: State, req: PredictRequest) -> dict[str, Any]:
    """Task opened (no prompts): queue its image's encoding, answer an empty prediction.

    ``{"results": [[]]}`` is one (empty) list of predictions per task: Label Studio 1.23.2
    accepts it without logging an error and stores no prediction, so it asks again (and the
    backend prewarms again, at no cost once cached) the next time the task opens."""
    segmenter = state.segmenter
    if segmenter is not None and state.settings.prewarm and req.label_config:
        try:
            keys = list(LabelConfig.parse(req.label_config).image_values.values())
        except BackendError:
            keys = []
        jobs = [(t.data[k], t.id) for t in req.tasks for k in keys[:1]
                if isinstance(t.data.get(k), str)]
        state.images.schedule(jobs, segmenter)
    return {"results": [[] for _ in req.tasks]}


def _predict(
    state: State, req: PredictRequest, should_stop: Callable[[], bool] | None = None
) -> dict[str, Any]:
    if is_video_context(req.params.context):
        return predict_video(state.video, req)  # VideoRectangle regions: track them
    ctx = parse_context(req.params.context)
    if ctx is None:
        return _prewarm(state, req)  # SAM2 needs prompts: nothing to pre-annotate yet
    if len(ctx.result) > state.settings.max_prompts:
        raise TooManyPrompts(
            f"{len(ctx.result)} prompts in one request, over SAM2_MAX_PROMPTS="
            f"{state.settings.max_prompts}: send fewer keypoints/rectangles per call",
            field="params.context.result",
        )
    config = LabelConfig.parse(req.label_config)
    task = req.tasks[0]
    to_names = {item.to_name for item in ctx.result}
    if len(to_names) != 1:
        raise BadContext(
            f"context refers to several images {sorted(to_names)}; send one image per call",
            field="params.context.result.to_name",
        )
    to_name = to_names.pop()
    key = config.data_key(to_name)
    if key not in task.data:
        raise BadContext(
            f"task {task.id} has no data.{key} (the value of Image {to_name!r})",
            field=f"tasks[0].data.{key}",
        )
    # Validate labels before any network or model work.
    for item in ctx.result:
        config.brush_for(item.to_name, item.label)
    segmenter = state.require_model()
    url = task.data[key]
    if should_stop is not None and should_stop():
        raise ClientGone
    image = state.images.resolve(url, task.id, segmenter)
    groups = build_groups(ctx, config, image.width, image.height)
    prompts = [p for g in groups for p in g.prompts]
    try:
        results = segmenter.segment(image.key, image.rgb, prompts, should_stop)
    except NeedImage:  # evicted since the memo was written: fetch the pixels again
        image = state.images.resolve(url, task.id, segmenter, force=True)
        results = segmenter.segment(image.key, image.rgb, prompts, should_stop)
    masks = iter(results)
    regions = [
        brush_result(g, next(masks), image.width, image.height)
        for g in groups
        for _ in g.prompts
    ]
    score = sum(r["score"] for r in regions) / len(regions)
    return {
        "results": [
            {"result": regions, "score": score, "model_version": segmenter.model_version}
        ]
    }


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    state = State(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await anyio.to_thread.run_sync(state.load)
        yield
        state.images.close()
        state.fetcher.close()
        state.video.close()

    credentials = load_credentials(settings)  # AuthConfigError: the CLI exits 2
    app = FastAPI(title="labelstack SAM2 backend", lifespan=lifespan)
    app.state.backend = state
    app.add_middleware(GuardMiddleware, credentials=credentials,
                       max_body=settings.max_request_bytes, on_error=lambda: state.bump("errors"))

    @app.exception_handler(BackendError)
    async def _backend_error(_: Request, exc: BackendError) -> JSONResponse:
        state.bump("errors")
        log.warning("%s: %s", exc.code, exc.message)
        return JSONResponse(exc.to_json(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        state.bump("errors")
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in err["loc"] if p != "body")
        return JSONResponse(
            BadContext(f"{where or 'body'}: {err['msg']}", field=where or "body").to_json(),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        state.bump("errors")
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        body = {"error": {"code": code, "message": str(exc.detail)}}
        return JSONResponse(body, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        state.bump("errors")
        log.exception("unexpected error")
        body = {"error": {"code": "internal_error",
                          "message": "unexpected error; the backend log has the details"}}
        return JSONResponse(body, status_code=500)

    @app.get("/health")
    @app.get("/")
    async def health() -> JSONResponse:
        seg = state.segmenter
        body: dict[str, Any] = {
            "status": "UP" if seg else "DOWN",
            "model_class": "SAM2",
            "model_version": seg.model_version if seg else None,
            "device": seg.device if seg else None,
            "requests": dict(state.counts),
        }
        if seg:
            body["encoder_calls"] = seg.encoder_calls
            body["decoder_calls"] = seg.decoder_calls
            body["prewarm"] = dict(state.images.counts)
            body["decodes_peak"] = state.fetcher.decodes_peak
            body["cache"] = vars(seg.cache.stats())
            body["video"] = state.video.stats()
        elif state.model_error:
            body["error"] = state.model_error.to_json()["error"]
        return JSONResponse(body, status_code=200 if seg else 503)

    @app.post("/setup")
    async def setup(req: SetupRequest) -> dict[str, Any]:
        state.bump("setup")
        seg = state.require_model()
        return {"model_version": seg.model_version}

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        state.bump("predict")
        req = parse_predict_body(await request.body(), settings)

        def gone() -> bool:  # asked from the worker thread before model work
            return anyio.from_thread.run(request.is_disconnected)

        def work() -> JSONResponse:
            # fetch, model work and JSON encoding of the (large) RLE lists stay off the loop
            return JSONResponse(_predict(state, req, gone))

        try:
            return await anyio.to_thread.run_sync(work)
        except ClientGone:
            state.bump("dropped")
            log.info("caller disconnected: request dropped before its model work")
            return JSONResponse({"error": {"code": "client_gone", "message": "dropped"}},
                                status_code=499)

    @app.post("/webhook")
    async def webhook(request: Request) -> dict[str, Any]:
        state.bump("webhook")
        return {"status": "ok", "trained": False}  # interactive only: nothing to train

    return app
