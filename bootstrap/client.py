"""Connecting to Label Studio: auth (personal access token or legacy token, from env or a
file, never printed), a request counter that proves no-op applies write nothing, and errors
turned into messages an operator can act on."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from bootstrap.errors import AuthError, BootstrapError, ServerError

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: exchanging a personal access token for a short-lived access token: auth, not a change
AUTH_PATHS = frozenset({"/api/token/refresh/"})
TOKEN_ENV = "LABEL_STUDIO_API_KEY"
TOKEN_FILE_ENV = "LABEL_STUDIO_API_KEY_FILE"


def read_token(token_file: Path | None = None, env: dict[str, str] | None = None) -> str:
    """The API key: --token-file, else $LABEL_STUDIO_API_KEY_FILE, else $LABEL_STUDIO_API_KEY.

    A JWT (personal access token) is refreshed by the SDK; anything else is a legacy token."""
    env = dict(os.environ) if env is None else env
    path = token_file or (Path(env[TOKEN_FILE_ENV]) if env.get(TOKEN_FILE_ENV) else None)
    if path is not None:
        try:
            token = path.read_text().strip()
        except OSError as e:
            raise BootstrapError(f"token file {path}: cannot read it ({e.strerror}); mount the "
                                 "Label Studio API key there or set LABEL_STUDIO_API_KEY") from e
        if not token:
            raise BootstrapError(f"token file {path} is empty: put the API key in it")
        return token
    token = env.get(TOKEN_ENV, "").strip()
    if not token:
        raise BootstrapError(f"no API key: set {TOKEN_ENV} (a personal access token or legacy "
                             f"token) or {TOKEN_FILE_ENV} / --token-file")
    return token


def token_kind(token: str) -> str:
    return "personal access token (JWT)" if token.count(".") == 2 else "legacy token"


@dataclass
class RequestLog:
    """Every request the SDK sends, so tests and `apply` can report write calls (a PAT
    refresh is auth, not a write, and is not counted as one)."""

    requests: list[tuple[str, str]] = field(default_factory=list)

    def hook(self, request: httpx.Request) -> None:
        self.requests.append((request.method, request.url.path))

    @property
    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] not in READ_METHODS and r[1] not in AUTH_PATHS]


class Server:
    """The SDK client plus helpers that translate failures into BootstrapErrors."""

    def __init__(self, url: str, token: str, *, timeout: float = 600):
        self.url = url.rstrip("/")
        self.log = RequestLog()
        self._http = httpx.Client(timeout=timeout, event_hooks={"request": [self.log.hook]})
        try:
            self.sdk = LabelStudio(base_url=self.url, api_key=token, httpx_client=self._http)
        except Exception as e:  # the SDK validates a JWT key by refreshing it
            raise self._translate(e, "authenticate") from e
        self._token_kind = token_kind(token)

    def close(self) -> None:
        self._http.close()

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BootstrapError:
            raise
        except Exception as e:
            raise self._translate(e, what) from e

    def _translate(self, e: Exception, what: str) -> BootstrapError:
        if isinstance(e, httpx.ConnectError | httpx.ConnectTimeout):
            return ServerError(f"cannot reach Label Studio at {self.url} ({what}): {e}. Fix: "
                               "check --url / LABEL_STUDIO_URL and that the server is up "
                               "(the entrypoint's --wait retries while it starts)")
        if isinstance(e, httpx.HTTPError):
            return ServerError(f"{what}: HTTP failure talking to {self.url}: {e}")
        if isinstance(e, ApiError):
            status = e.status_code
            detail = _detail(e.body)
            if status == 401:
                return AuthError(f"Label Studio at {self.url} rejected the API key (401: "
                                   f"{detail}). Fix: give a valid personal access token or, if "
                                   "legacy tokens are enabled, a legacy token")
            if status == 403:
                return ServerError(f"{what}: forbidden (403: {detail})")
            return ServerError(f"{what}: Label Studio answered {status}: {detail}")
        # SDK errors raised before any HTTP status (e.g. JWT refresh on a bad token)
        msg = str(e)
        if "401" in msg or "token" in msg.lower():
            return AuthError(f"Label Studio at {self.url} rejected the API key ({msg}). Fix: "
                               "give a valid personal access token or legacy token")
        return ServerError(f"{what}: {type(e).__name__}: {msg}")

    def whoami(self) -> str:
        user = self.call("check the API key", self.sdk.users.whoami)
        return user.email or user.username or str(user.id)

    # raw JSON helpers for endpoints where the SDK's typed models drop fields we compare
    def get_json(self, path: str, what: str, **params: Any) -> Any:
        return self.call(what, self._raw, "GET", path, params=params)

    def send_json(self, method: str, path: str, what: str, body: Any = None) -> Any:
        return self.call(what, self._raw, method, path, json=body)

    def _raw(self, method: str, path: str, **kw: Any) -> Any:
        wrapper = self.sdk._client_wrapper
        headers = wrapper.get_headers()
        r = self._http.request(method, f"{self.url}{path}", headers=headers, **kw)
        if r.status_code >= 400:
            try:
                body = r.json()
            except ValueError:
                body = r.text
            raise ApiError(status_code=r.status_code, body=body, headers=dict(r.headers))
        return r.json() if r.content else None


def _detail(body: Any) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", _raw_detail(body)).split())[:800]


def _raw_detail(body: Any) -> str:
    if isinstance(body, dict):
        ve = body.get("validation_errors")
        if ve:
            parts = []
            for k, v in ve.items():
                vs = v if isinstance(v, list) else [v]
                parts.append(("" if k == "non_field_errors" else f"{k}: ") + "; ".join(
                    str(x) for x in vs))
            return " | ".join(parts)
        return str(body.get("detail") or body)
    return str(body)[:500]


def wait_for_server(url: str, *, timeout: float, interval: float = 3.0,
                    on_wait: Callable[[str], None] | None = None) -> None:
    """Poll {url}/health until Label Studio answers (container entrypoint)."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            r = httpx.get(f"{url.rstrip('/')}/health", timeout=5)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            last = type(e).__name__
        if time.monotonic() >= deadline:
            raise ServerError(f"Label Studio at {url} not healthy after {timeout:.0f}s "
                              f"(last: {last}). Fix: check the Label Studio pod and --url")
        if on_wait:
            on_wait(last)
        time.sleep(interval)
