"""FastAPI app speaking Label Studio's ML backend protocol (/health, /setup, /predict, /webhook).

Model work runs in worker threads and is serialized by the segmenter's lock; /health never
touches the lock, so it answers while a long encoder pass is running.
"""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from backend.errors import BackendError, BadContext, WeightsError
from backend.images import ImageFetcher
from backend.model import Segmenter
from backend.protocol import (
    LabelConfig,
    PredictRequest,
    SetupRequest,
    brush_result,
    build_groups,
    parse_context,
)
from backend.settings import Settings

log = logging.getLogger(__name__)


class State:
    """Process state: the model (or why it is unavailable) and counters for /health."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.segmenter: Segmenter | None = None
        self.model_error: WeightsError | None = None
        self.fetcher = ImageFetcher(settings)
        self.counts = {"setup": 0, "predict": 0, "webhook": 0, "errors": 0}
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


def _predict(state: State, req: PredictRequest) -> dict[str, Any]:
    ctx = parse_context(req.params.context)
    if ctx is None:
        return {"results": []}  # SAM2 needs prompts: nothing to pre-annotate without them
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
    image = state.fetcher.load(task.data[key], task.id)
    groups = build_groups(ctx, config, image.width, image.height)
    prompts = [p for g in groups for p in g.prompts]
    masks = iter(segmenter.segment(image.key, image.rgb, prompts))
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
        state.fetcher.close()

    app = FastAPI(title="labelstack SAM2 backend", lifespan=lifespan)
    app.state.backend = state

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

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        state.bump("errors")
        log.exception("unexpected error")
        body = {"error": {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}}
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
            body["cache"] = vars(seg.cache.stats())
        elif state.model_error:
            body["error"] = state.model_error.to_json()["error"]
        return JSONResponse(body, status_code=200 if seg else 503)

    @app.post("/setup")
    async def setup(req: SetupRequest) -> dict[str, Any]:
        state.bump("setup")
        seg = state.require_model()
        return {"model_version": seg.model_version}

    @app.post("/predict")
    async def predict(req: PredictRequest) -> JSONResponse:
        state.bump("predict")
        # fetch, model work and JSON encoding of the (large) RLE lists all stay off the loop
        return await anyio.to_thread.run_sync(lambda: JSONResponse(_predict(state, req)))

    @app.post("/webhook")
    async def webhook(request: Request) -> dict[str, Any]:
        state.bump("webhook")
        return {"status": "ok", "trained": False}  # interactive only: nothing to train

    return app
