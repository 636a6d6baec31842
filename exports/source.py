"""Streaming readers of Label Studio tasks, each with its annotations and predictions.

Two sources give the same plain dicts (the task JSON of Label Studio's export and tasks API):

* :func:`iter_export_file`: a JSON export file (``exportType=JSON``: an array of tasks), parsed
  one task at a time from chunks with ``json.JSONDecoder.raw_decode``; the file is never held
  in memory at once.
* :func:`iter_project_tasks`: a live project, paged through ``GET /api/tasks/?fields=all``
  with the SDK's authenticated client (a personal access token is refreshed by the SDK).

Both raise :class:`SourceError` (a ``ValueError``) naming the file or project, the task and
what is wrong. Tasks are PHI: nothing here logs their content.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

_CHUNK_CHARS = 1 << 20
# a failed parse this close to the end of the buffer may only need more of the file
# (the longest JSON token without a closing quote or brace: "-Infinity")
_TAIL_SLACK = 10
_WHITESPACE = " \t\n\r"


class SourceError(ValueError):
    """A task source that cannot be read: a malformed file, a refused or failed request."""

    def __init__(self, message: str, *, service_failed: bool = False) -> None:
        super().__init__(message)
        #: True when a server failed (exit code 3), False for bad input (exit code 2)
        self.service_failed = service_failed


class _Chunks:
    """A text file read in chunks, with a cursor into the part not consumed yet."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.buf = ""
        self.pos = 0
        self.consumed = 0  # characters dropped from the front of the buffer
        self.eof = False

    def more(self) -> bool:
        """Read another chunk; False at the end of the file."""
        if self.eof:
            return False
        chunk = self.handle.read(_CHUNK_CHARS)
        if not chunk:
            self.eof = True
            return False
        if self.pos > len(self.buf) // 2:
            self.consumed += self.pos
            self.buf, self.pos = self.buf[self.pos :], 0
        self.buf += chunk
        return True

    def peek(self) -> str:
        """The next character that is not white space ("" at the end of the file)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buf) or not self.more():
                return self.buf[self.pos : self.pos + 1]

    @property
    def offset(self) -> int:
        return self.consumed + self.pos


def _needs_more(exc: json.JSONDecodeError, buf: str) -> bool:
    return exc.msg.startswith("Unterminated string") or exc.pos >= len(buf) - _TAIL_SLACK


def iter_export_file(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Tasks of a Label Studio JSON export file, one dict at a time (the file is streamed).

    Raises :class:`SourceError` naming the file, the task's position (and the id of the last
    good task) and the parser's message for malformed JSON, or a task that is not an object
    with ``id`` and ``data``.
    """
    decoder = json.JSONDecoder()
    name = os.fspath(path)
    try:
        handle = open(name, encoding="utf-8")  # noqa: SIM115 (closed in finally)
    except OSError as exc:
        raise SourceError(f"{name}: cannot open the export file ({exc.strerror})") from None
    reader = _Chunks(handle)
    index, last_id = 0, None

    def fail(what: str) -> SourceError:
        after = f", after task id {last_id}" if last_id is not None else ""
        return SourceError(f"{name}: task #{index + 1} of the file (character {reader.offset}"
                           f"{after}): {what}. Re-export the project as JSON "
                           "(Export > JSON) or fix the file.")

    try:
        first = reader.peek()
        if first != "[":
            raise SourceError(f"{name}: not a Label Studio JSON export: it must start with '[' "
                              f"(an array of tasks), found {first or 'an empty file'!r}")
        reader.pos += 1
        expect_item = True  # after '[' or ','
        while True:
            nxt = reader.peek()
            if nxt == "]":
                if expect_item and index:
                    raise fail("a ',' is followed by ']' (trailing comma)")
                reader.pos += 1
                if reader.peek():
                    raise fail("extra content after the closing ']'")
                return
            if nxt == "":
                raise fail("the file ends before the closing ']' (truncated)")
            if not expect_item:
                if nxt != ",":
                    raise fail(f"expected ',' or ']' between tasks, found {nxt!r}")
                reader.pos += 1
                expect_item = True
                continue
            while True:
                try:
                    task, end = decoder.raw_decode(reader.buf, reader.pos)
                    break
                except json.JSONDecodeError as exc:
                    if not (_needs_more(exc, reader.buf) and reader.more()):
                        raise fail(f"malformed JSON: {exc.msg}") from None
            reader.pos = end
            if not isinstance(task, dict) or "data" not in task or "id" not in task:
                raise fail("not a task: each item must be an object with 'id' and 'data'")
            yield task
            index, last_id, expect_item = index + 1, task.get("id"), False
    finally:
        handle.close()


def _client_http(url: str, api_key: str):
    """The SDK's authenticated HTTP client (it sends and refreshes personal access tokens)."""
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=url.rstrip("/"), api_key=api_key)._client_wrapper.httpx_client


def _get(http, path: str, params: dict[str, Any], what: str) -> Any:
    import httpx

    try:
        response = http.request(path, method="GET", params=params)
    except httpx.HTTPError as exc:
        raise SourceError(f"{what}: Label Studio cannot be reached ({exc})",
                          service_failed=True) from None
    if response.status_code in (401, 403):
        raise SourceError(f"{what}: Label Studio refused the API key (HTTP "
                          f"{response.status_code}): pass a personal access token or legacy "
                          "token of a member of the project's organization")
    if response.status_code == 404:
        return None
    if response.status_code >= 400:
        raise SourceError(f"{what}: Label Studio answered HTTP {response.status_code}",
                          service_failed=response.status_code >= 500)
    return response.json()


def iter_project_tasks(url: str, api_key: str, project_id: int, *, page_size: int = 100,
                       on_total: Callable[[int], None] | None = None
                       ) -> Iterator[dict[str, Any]]:
    """Tasks of a live project with annotations and predictions, one page in memory at a time.

    ``on_total`` is called once with the project's task count (for a progress bar).
    """
    http = _client_http(url, api_key)
    what = f"project {project_id} at {url}"
    if _get(http, f"api/projects/{int(project_id)}/", {}, what) is None:
        raise SourceError(f"{what}: no such project (HTTP 404): check --project")
    page, seen = 1, 0
    while True:
        body = _get(http, "api/tasks/", {"project": int(project_id), "fields": "all",
                                         "page": page, "page_size": page_size}, what)
        tasks = (body or {}).get("tasks") or []
        if page == 1 and on_total is not None:
            on_total(int((body or {}).get("total", len(tasks))))
        yield from tasks
        seen += len(tasks)
        total = (body or {}).get("total")
        if not tasks or len(tasks) < page_size or (total is not None and seen >= total):
            return
        page += 1


def user_emails(url: str, api_key: str) -> dict[int, str]:
    """User id -> email of the organization's members (annotations name their author by id)."""
    body = _get(_client_http(url, api_key), "api/users/", {}, f"users at {url}") or []
    return {int(u["id"]): u.get("email") or u.get("username") or str(u["id"]) for u in body}
