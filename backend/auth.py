"""Caller authentication (HTTP basic, Label Studio's BASIC_AUTH ML connection) and the request
body limit, as one ASGI middleware in front of every route but the health probe."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.errors import BackendError
from backend.settings import Settings

log = logging.getLogger(__name__)

#: Paths answered without credentials: Kubernetes probes and Label Studio's health check.
OPEN_PATHS = frozenset({"/health", "/"})


class AuthConfigError(ValueError):
    """Caller authentication is neither configured nor explicitly disabled."""


class Unauthorized(BackendError):
    status, code = 401, "unauthorized"


class BodyTooLarge(BackendError):
    status, code = 413, "request_too_large"


@dataclass(frozen=True)
class Credentials:
    user: bytes
    password: bytes

    def accepts(self, header: str | None) -> bool:
        """Constant-time check of an ``Authorization: Basic ...`` header."""
        if not header or header[:6].lower() != "basic ":
            return False
        try:
            raw = base64.b64decode(header[6:].strip(), validate=True)
            user, sep, password = raw.partition(b":")
        except (binascii.Error, ValueError):
            return False
        # compare both parts every time, so timing tells nothing about which one was wrong
        ok_user = hmac.compare_digest(user, self.user)
        ok_password = hmac.compare_digest(password, self.password)
        return bool(sep) and ok_user and ok_password


def load_credentials(settings: Settings) -> Credentials | None:
    """The credentials callers must send, or None when auth is explicitly disabled."""
    if settings.auth_disabled:
        log.error(
            "CALLER AUTHENTICATION IS DISABLED (SAM2_AUTH_DISABLED=true): anyone who reaches this "
            "port can make the backend fetch task images with its Label Studio token"
        )
        return None
    if settings.basic_auth_file:
        path = Path(settings.basic_auth_file)
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise AuthConfigError(
                f"SAM2_BASIC_AUTH_FILE={path}: cannot read it ({exc.strerror}): mount the "
                "Secret holding user:password there"
            ) from exc
        user, sep, password = text.partition(":")
        if not (sep and user and password):
            raise AuthConfigError(
                f"SAM2_BASIC_AUTH_FILE={path} does not hold 'user:password' on one line"
            )
        return Credentials(user.encode(), password.encode())
    password = settings.basic_auth_pass.get_secret_value() if settings.basic_auth_pass else ""
    if settings.basic_auth_user and password:
        return Credentials(settings.basic_auth_user.encode(), password.encode())
    raise AuthConfigError(
        "caller authentication is required: set SAM2_BASIC_AUTH_USER and SAM2_BASIC_AUTH_PASS "
        "(or SAM2_BASIC_AUTH_FILE with user:password) and give Label Studio the same pair "
        "(ML backend auth BASIC_AUTH), or set SAM2_AUTH_DISABLED=true to run without"
    )


class GuardMiddleware:
    """401 without valid credentials (except the health probe); 413 for a body over the limit,
    by its Content-Length or, when streamed, as soon as it passes the limit."""

    def __init__(self, app: Any, credentials: Credentials | None, max_body: int,
                 on_error: Any = None) -> None:
        self.app, self.credentials, self.max_body = app, credentials, max_body
        self.on_error = on_error or (lambda: None)

    async def _refuse(self, send: Any, exc: BackendError, extra: list | None = None) -> None:
        self.on_error()
        body = json.dumps(exc.to_json()).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()), *(extra or [])]
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.credentials and not self.credentials.accepts(
            headers.get(b"authorization", b"").decode("latin-1")
        ):
            await self._refuse(send, Unauthorized(
                "missing or wrong credentials: configure the ML backend in Label Studio with "
                "auth BASIC_AUTH and the SAM2_BASIC_AUTH_USER / SAM2_BASIC_AUTH_PASS pair",
                field="Authorization",
            ), [(b"www-authenticate", b'Basic realm="sam2-backend"')])
            return
        limit = self.max_body
        too_large = BodyTooLarge(
            f"request body is over SAM2_MAX_REQUEST_BYTES={limit}: send smaller images by URL "
            "rather than inline data: URIs",
            field="SAM2_MAX_REQUEST_BYTES",
        )
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        if declared > limit:
            await self._refuse(send, too_large)
            return
        seen = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _Overflow
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _Overflow:
            if not started:
                await self._refuse(send, too_large)


class _Overflow(Exception):
    """The streamed body passed the limit."""
