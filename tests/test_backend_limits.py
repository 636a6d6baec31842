"""The limits found by feeding the backend bad input, each reproduced and shown fixed.

1. callers must authenticate; the backend fetches only Label Studio's data paths with its
   token, never /api/; errors relay no upstream body;
2. redirects: a self-redirect is followed at most SAM2_MAX_REDIRECTS times, each target checked;
3. SAM2_FETCH_TIMEOUT_S is one deadline for the whole download (a 1-byte drip is cut);
4. data: URIs count against SAM2_MAX_IMAGE_BYTES; bodies over SAM2_MAX_REQUEST_BYTES are 413;
5. at most SAM2_MAX_DECODES images decode at once;
6. at most SAM2_MAX_PROMPTS prompts a request, decoded in batched slices that let another
   caller's click in between; a request whose caller has gone is dropped before model work;
7. malformed URLs and deeply nested bodies are 4xx in the documented error shape.

"Label Studio" here is a recording HTTP server on loopback: it answers the data paths and
records every request, so a test can show what the backend asked for and what it did not.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from PIL import Image

from backend.auth import AuthConfigError, Credentials, load_credentials
from backend.images import ImageFetcher
from backend.settings import Settings
from tests.backend_server import (
    BackendProcess,
    data_uri,
    keypoint,
    predict_body,
    rectangle,
    sample_image,
    start_backend,
)

pytestmark = pytest.mark.sam2

TOKEN = "legacy-token-of-the-backend"
DRIP_INTERVAL = 0.25


class _Recorder(BaseHTTPRequestHandler):
    """Label Studio stand-in: data paths, a redirect loop, a drip, a failing path."""

    seen: list[tuple[str, str | None]] = []
    drip_bytes = 0
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        if self.path.startswith("/data/upload/loop.png"):
            self.send_response(302)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path.startswith("/data/upload/metadata.png"):
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path.startswith("/data/upload/drip.png"):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(400):  # 100 s at most
                    self.wfile.write(b"\x89")
                    self.wfile.flush()
                    type(self).drip_bytes += 1
                    time.sleep(DRIP_INTERVAL)
            except OSError:
                pass  # the backend hung up: what the deadline is for
        elif self.path.startswith("/data/upload/secret.png"):
            body = b"Traceback ... patient Jane Doe, MRN 0042 ... SECRET-UPSTREAM-BODY"
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path in self.files:
            body = self.files[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            body = b'{"users": ["everyone"]}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def fake_ls() -> Iterator[str]:
    _Recorder.files = {"/data/upload/1/scan.png": sample_image(501),
                       "/data/upload/1/big.png": sample_image(502, 1024, 768),
                       "/data/upload/1/fresh.png": sample_image(504, 1024, 768)}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def tight(fake_ls, tmp_path_factory) -> Iterator[BackendProcess]:
    """A backend with small limits, resolving task images through the recording server."""
    backend = start_backend(
        tmp_path_factory.mktemp("sam2-limits"),
        LABEL_STUDIO_URL=fake_ls,
        LABEL_STUDIO_API_KEY=TOKEN,
        SAM2_ALLOWED_IMAGE_HOSTS="[]",
        SAM2_FETCH_TIMEOUT_S="2",
        SAM2_MAX_REDIRECTS="2",
        SAM2_MAX_IMAGE_BYTES=str(3 * 2**20),
        SAM2_MAX_REQUEST_BYTES=str(6 * 2**20),
        SAM2_MAX_DECODES="1",
        SAM2_MAX_PROMPTS="8",
        SAM2_PROMPTS_PER_PASS="1",
    )
    try:
        yield backend
    finally:
        backend.stop()


def _error(resp: httpx.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == code and err["message"], err
    return err


def _paths() -> list[str]:
    return [path for path, _ in _Recorder.seen]


# -- 1. authentication and what the backend fetches with its token --------------------------
def test_callers_must_authenticate(tight) -> None:
    body = predict_body("/data/upload/1/scan.png", [keypoint(40, 40)])
    for path, payload in [("/predict", body), ("/setup", {"project": "1.1"}),
                          ("/webhook", {"action": "PROJECT_UPDATED"})]:
        for auth in (None, ("label-studio", "wrong"), ("intruder", tight.auth[1])):
            resp = tight.post(path, json=payload, auth=auth, timeout=30)
            err = _error(resp, 401, "unauthorized")
            assert "SAM2_BASIC_AUTH_USER" in err["message"]
            assert resp.headers["www-authenticate"].startswith("Basic")
    assert tight.health().status_code == 200  # probes stay open
    assert not any(p.startswith("/data/upload/1/scan.png") for p in _paths())


@pytest.mark.parametrize("path", [
    "/api/users/",
    "/api/projects/1/export?exportType=JSON",
    "/data/upload/../api/users/",
    "/data/upload/%2e%2e/%2e%2e/api/users/",
    "/tasks/1/resolve/../../api/users/",
])
def test_only_label_studio_data_paths_are_fetched(tight, fake_ls, path) -> None:
    _Recorder.seen.clear()
    for url in (path, fake_ls + path):  # relative, and absolute on the Label Studio origin
        err = _error(tight.post("/predict", json=predict_body(url, [keypoint(40, 40)])),
                     422, "image_source_refused")
        assert "data path" in err["message"]
    assert _Recorder.seen == []  # nothing reached Label Studio, with or without the token


def test_data_path_fetched_with_the_token_and_errors_relay_no_body(tight) -> None:
    _Recorder.seen.clear()
    ok = tight.post("/predict", json=predict_body("/data/upload/1/scan.png", [keypoint(40, 40)]))
    assert ok.status_code == 200, ok.text
    assert _Recorder.seen == [("/data/upload/1/scan.png", f"Token {TOKEN}")]
    err = _error(tight.post("/predict", json=predict_body("/data/upload/secret.png",
                                                          [keypoint(40, 40)])),
                 502, "image_unreachable")
    assert "HTTP 500" in err["message"]
    assert "SECRET" not in json.dumps(err) and "Jane" not in json.dumps(err)


def test_auth_configuration(tmp_path, caplog) -> None:
    with pytest.raises(AuthConfigError, match="SAM2_BASIC_AUTH_USER"):
        load_credentials(Settings())
    secret_file = tmp_path / "auth"
    secret_file.write_text("label-studio:s3cret:with-colon\n")
    creds = load_credentials(Settings(basic_auth_file=str(secret_file)))
    assert creds == Credentials(b"label-studio", b"s3cret:with-colon")
    good = "Basic " + __import__("base64").b64encode(b"label-studio:s3cret:with-colon").decode()
    assert creds.accepts(good) and not creds.accepts(good[:-2]) and not creds.accepts(None)
    secret_file.write_text("no-colon-here")
    with pytest.raises(AuthConfigError, match="user:password"):
        load_credentials(Settings(basic_auth_file=str(secret_file)))
    with caplog.at_level(logging.ERROR, logger="backend.auth"):
        assert load_credentials(Settings(auth_disabled=True)) is None
    assert "AUTHENTICATION IS DISABLED" in caplog.text


def test_backend_without_credentials_refuses_to_start(tmp_path) -> None:
    import subprocess
    import sys

    from tests.backend_server import ROOT, TEST_ENV

    env = {k: v for k, v in TEST_ENV.items() if "BASIC_AUTH" not in k}
    proc = subprocess.run([sys.executable, "-m", "backend", "--port", "1"], cwd=ROOT,
                          env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "SAM2_BASIC_AUTH_USER" in proc.stderr and "SAM2_AUTH_DISABLED" in proc.stderr


# -- 2. redirects ---------------------------------------------------------------------------
def test_redirect_loop_is_cut(tight) -> None:
    _Recorder.seen.clear()
    err = _error(tight.post("/predict", json=predict_body("/data/upload/loop.png",
                                                          [keypoint(40, 40)])),
                 422, "image_source_refused")
    # the loop target is Label Studio itself, which is not an allowed redirect target
    assert "redirected" in err["message"]
    assert _paths().count("/data/upload/loop.png") == 1


def test_redirect_cap_and_each_target_checked(tight, fake_ls, tmp_path) -> None:
    """With Label Studio's host allowed as a redirect target, the loop stops at the cap."""
    settings = Settings(label_studio_url=fake_ls, label_studio_api_key=TOKEN,
                        allowed_image_hosts=["127.0.0.1"], max_redirects=2,
                        fetch_timeout_s=10)
    fetcher = ImageFetcher(settings)
    try:
        _Recorder.seen.clear()
        from backend.errors import ImageSourceRefused, ImageUnreachable

        with pytest.raises(ImageUnreachable, match="SAM2_MAX_REDIRECTS=2"):
            fetcher.fetch_bytes("/data/upload/loop.png", 1)
        assert _paths().count("/data/upload/loop.png") == 3  # the request and two redirects
        # the token went to Label Studio only, not to the redirect targets
        assert [auth for _, auth in _Recorder.seen] == [f"Token {TOKEN}", None, None]
        with pytest.raises(ImageSourceRefused, match=r"169\.254\.169\.254"):
            fetcher.fetch_bytes("/data/upload/metadata.png", 1)
    finally:
        fetcher.close()


# -- 3. one deadline per image --------------------------------------------------------------
def test_fetch_deadline_cuts_a_drip(tight) -> None:
    _Recorder.drip_bytes = 0
    err = _error(tight.post("/predict", json=predict_body("/data/upload/drip.png",
                                                          [keypoint(40, 40)])),
                 502, "image_unreachable")
    assert err["field"] == "SAM2_FETCH_TIMEOUT_S"
    time.sleep(3 * DRIP_INTERVAL)  # let the drip notice the closed connection
    sent = _Recorder.drip_bytes
    time.sleep(4 * DRIP_INTERVAL)
    assert _Recorder.drip_bytes == sent  # the backend hung up: the drip stopped
    # a per-read timeout would have read on for the drip's whole 400 bytes
    assert sent < 100


# -- 4. one byte limit for every scheme, and a body limit ----------------------------------
def test_data_uri_counts_against_the_image_byte_limit(tight) -> None:
    png = io.BytesIO()
    Image.frombytes("L", (2000, 1800), bytes(range(256)) * 14063).save(png, "PNG",
                                                                        compress_level=0)
    assert 3 * 2**20 < len(png.getvalue()) < 4 * 2**20  # over the image limit, body under 6
    before = tight.health().json()["decodes_peak"]
    err = _error(tight.post("/predict", json=predict_body(data_uri(png.getvalue()),
                                                          [keypoint(40, 40)])),
                 413, "image_too_large")
    assert err["field"] == "SAM2_MAX_IMAGE_BYTES"
    assert tight.health().json()["decodes_peak"] == before


def test_request_body_limit(tight) -> None:
    big = {"tasks": [{"id": 1, "data": {"image": "x" * (7 * 2**20)}}]}
    err = _error(tight.post("/predict", json=big), 413, "request_too_large")
    assert err["field"] == "SAM2_MAX_REQUEST_BYTES"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams in
        yield b'{"tasks": [{"id": 1, "data": {"image": "'
        for _ in range(110):
            yield b"x" * 2**16
        yield b'"}}]}'

    _error(tight.post("/predict", content=chunks(), headers={"content-type": "application/json"}),
           413, "request_too_large")
    assert tight.proc.poll() is None


# -- 5. bounded concurrent decodes ----------------------------------------------------------
def test_decodes_are_bounded() -> None:
    png = io.BytesIO()
    Image.frombytes("RGB", (1900, 1800), bytes(range(256)) * 40079).save(png, "PNG")
    uri = data_uri(png.getvalue())
    fetcher = ImageFetcher(Settings(max_decodes=2, max_image_bytes=64 * 2**20))
    barrier = threading.Barrier(6)

    def load(_: int) -> tuple[int, int]:
        barrier.wait()
        return fetcher.load(uri, None).rgb.shape[:2]

    try:
        with ThreadPoolExecutor(6) as pool:
            shapes = list(pool.map(load, range(6)))
    finally:
        fetcher.close()
    assert shapes == [(1800, 1900)] * 6
    assert fetcher.decodes_peak == 2 and fetcher.decoding == 0


# -- 6. prompt cap, batched slices, fairness, callers that have gone ------------------------
def test_prompt_cap_names_the_limit(tight) -> None:
    before = tight.health().json()
    items = [keypoint(10 + i, 10 + i) for i in range(9)]
    err = _error(tight.post("/predict", json=predict_body("/data/upload/1/scan.png", items)),
                 422, "too_many_prompts")
    assert "SAM2_MAX_PROMPTS=8" in err["message"]
    after = tight.health().json()
    assert (after["encoder_calls"], after["decoder_calls"]) == (
        before["encoder_calls"], before["decoder_calls"])


def test_batched_pass_per_slice(sam2_backend) -> None:
    """Eight rectangles of one label: one decoder pass (SAM2_PROMPTS_PER_PASS=8), not eight."""
    uri = data_uri(sample_image(503))
    sam2_backend.post("/predict", json=predict_body(uri, [keypoint(50, 50)]))  # encode once
    before = sam2_backend.health().json()["decoder_calls"]
    items = [rectangle(5 + 10 * i, 10, 9, 60) for i in range(8)]
    resp = sam2_backend.post("/predict", json=predict_body(uri, items))
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["results"][0]["result"]) == 8
    assert sam2_backend.health().json()["decoder_calls"] == before + 1


def test_a_click_is_served_between_the_slices_of_a_large_request(tight) -> None:
    big = "/data/upload/1/big.png"
    for url in (big, "/data/upload/1/scan.png"):  # both embeddings cached first
        assert tight.post("/predict", json=predict_body(url, [keypoint(50, 50)])).status_code \
            == 200
    start = tight.health().json()["decoder_calls"]
    rects = [rectangle(2 + 12 * i, 5, 10, 80) for i in range(8)]
    with ThreadPoolExecutor(1) as pool:
        large = pool.submit(tight.post, "/predict", json=predict_body(big, rects))
        while tight.health().json()["decoder_calls"] == start and not large.done():
            time.sleep(0.01)
        click = tight.post("/predict", json=predict_body("/data/upload/1/scan.png",
                                                         [keypoint(40, 40)]))
        passes_when_click_answered = tight.health().json()["decoder_calls"] - start
        assert click.status_code == 200 and large.result().status_code == 200
    # the click's own pass plus fewer than the large request's eight slices: it went between
    assert passes_when_click_answered < 8 + 1


def test_request_of_a_caller_who_left_is_dropped(tight) -> None:
    """While the model encodes a new image, a second caller gives up: its request never
    reaches the decoder."""
    assert tight.post("/predict", json=predict_body("/data/upload/1/scan.png",
                                                    [keypoint(40, 40)])).status_code == 200
    before = tight.health().json()
    fresh = "/data/upload/1/fresh.png"
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(tight.post, "/predict", json=predict_body(fresh, [keypoint(50, 50)]))
        while tight.health().json()["encoder_calls"] == before["encoder_calls"]:
            time.sleep(0.01)  # the encoder pass for the new image has started
        with pytest.raises(httpx.ReadTimeout):
            tight.post("/predict", timeout=0.5,
                       json=predict_body("/data/upload/1/scan.png", [keypoint(60, 60)]))
        assert slow.result().status_code == 200
    deadline = time.monotonic() + 30
    while tight.health().json()["requests"]["dropped"] == before["requests"]["dropped"]:
        assert time.monotonic() < deadline, "the abandoned request was not dropped"
        time.sleep(0.1)
    after = tight.health().json()
    assert after["requests"]["dropped"] == before["requests"]["dropped"] + 1
    assert after["decoder_calls"] == before["decoder_calls"] + 1  # the slow click's pass only


# -- 7. malformed input answers 4xx in the documented shape ---------------------------------
def test_url_with_a_bad_port(sam2_backend) -> None:
    for url in ("http://host:abc/x.png", "http://127.0.0.1:99999/x.png"):
        err = _error(sam2_backend.post("/predict", json=predict_body(url, [keypoint(4, 4)])),
                     422, "image_source_refused")
        assert "not a valid URL" in err["message"]


@pytest.mark.parametrize("depth", [40, 5000])
def test_deeply_nested_body(sam2_backend, depth) -> None:
    body = predict_body(data_uri(sample_image(7)), [keypoint(40, 40)])
    raw = json.dumps(body)[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
    resp = sam2_backend.post("/predict", content=raw.encode(),
                             headers={"content-type": "application/json"})
    err = _error(resp, 422, "bad_context")
    assert "nested deeper than 32" in err["message"]


def test_unknown_path_and_method_use_the_error_shape(sam2_backend) -> None:
    _error(sam2_backend.post("/nope", json={}), 404, "not_found")
    resp = httpx.get(f"{sam2_backend.url}/predict", auth=sam2_backend.auth, timeout=10)
    _error(resp, 405, "method_not_allowed")


def test_raw_socket_garbage_keeps_the_service_up(sam2_backend) -> None:
    host, port = sam2_backend.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}")
        assert s.recv(100).startswith(b"HTTP/1.1 4")
    assert sam2_backend.health().json()["status"] == "UP"
