"""Bad input gets a clear JSON error with the right status, and the backend stays up."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.backend_server import (
    LABEL_CONFIG,
    data_uri,
    keypoint,
    predict_body,
    rectangle,
    sample_image,
    start_backend,
)

pytestmark = pytest.mark.sam2


class _Files(BaseHTTPRequestHandler):
    files: dict[str, tuple[int, bytes, str]] = {}

    def do_GET(self) -> None:
        status, body, ctype = self.files.get(self.path, (404, b"not found", "text/plain"))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, "PNG")  # tiny file, many pixels
    return buf.getvalue()


@pytest.fixture(scope="module")
def image_host() -> Iterator[str]:
    """A plain HTTP server on loopback serving good, bad and oversized 'images'."""
    _Files.files = {
        "/ok.png": (200, sample_image(7), "image/png"),
        "/notes.txt": (200, b"this is not an image\n" * 20, "image/png"),
        "/truncated.png": (200, sample_image(7)[:200], "image/png"),
        "/huge.png": (200, _png(2600, 2000), "image/png"),  # 5.2 MP > SAM2_MAX_IMAGE_PIXELS
        "/big.bin": (200, np.random.default_rng(0).bytes(9 * 2**20), "image/png"),  # > 8 MiB
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _closed_port_url() -> str:
    from tests.backend_server import free_port

    return f"http://127.0.0.1:{free_port()}/gone.png"


def _error(resp: httpx.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert err["code"] == code
    assert err["message"]
    return err


def _still_up(backend) -> None:
    assert backend.proc.poll() is None
    assert backend.health().json()["status"] == "UP"


GOOD = [keypoint(40, 40)]


@pytest.mark.parametrize(
    "items, where",
    [
        ([{**keypoint(40, 40), "value": {"x": "left", "y": 4, "keypointlabels": ["Lesion"]}}],
         "value.x"),
        ([{**keypoint(40, 40), "value": {"x": 140, "y": 4, "keypointlabels": ["Lesion"]}}],
         "value.x"),
        ([{k: v for k, v in keypoint(40, 40).items() if k != "value"}], "value"),
        ([{**rectangle(10, 10, 20, 20), "value": {"x": 1, "y": 1, "rectanglelabels": ["Lesion"]}}],
         "width"),
        ([{**keypoint(40, 40), "type": "polygonlabels"}], "type"),
        ([{**keypoint(40, 40), "value": {"x": 1, "y": 1, "keypointlabels": []}}], "label"),
        (["not an object"], "result.0"),
    ],
)
def test_malformed_context(sam2_backend, items, where) -> None:
    resp = sam2_backend.post("/predict",
                      json=predict_body(data_uri(sample_image(7)), items), timeout=60)
    err = _error(resp, 422, "bad_context")
    assert where in err["message"] or where in err.get("field", "")
    _still_up(sam2_backend)


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda b: b.pop("tasks"), "tasks"),
        (lambda b: b.update(tasks=[]), "tasks"),
        (lambda b: b["params"]["context"].update(result="oops"), "result"),
        (lambda b: b.update(label_config="<View><Image"), "label_config"),
        (lambda b: b["tasks"][0].update(data={"img": "x"}), "data.image"),
    ],
)
def test_malformed_request(sam2_backend, mutate, field) -> None:
    body = predict_body(data_uri(sample_image(7)), GOOD)
    mutate(body)
    resp = sam2_backend.post("/predict", json=body, timeout=60)
    err = _error(resp, 422, "bad_context")
    assert field in err["message"] or field in err.get("field", "")
    _still_up(sam2_backend)


def test_not_json_at_all(sam2_backend) -> None:
    resp = sam2_backend.post("/predict", content=b"{nope",
                      headers={"content-type": "application/json"})
    _error(resp, 422, "bad_context")
    _still_up(sam2_backend)


def test_unknown_label(sam2_backend) -> None:
    before = sam2_backend.health().json()["encoder_calls"]
    resp = sam2_backend.post("/predict",
                      json=predict_body(data_uri(sample_image(7)), [keypoint(40, 40, "Tumour")]))
    err = _error(resp, 422, "unknown_label")
    assert "'Tumour'" in err["message"] and "Lesion" in err["message"]
    assert sam2_backend.health().json()["encoder_calls"] == before  # refused before model work
    _still_up(sam2_backend)


def test_config_without_brush_labels(sam2_backend) -> None:
    body = predict_body(data_uri(sample_image(7)), GOOD)
    body["label_config"] = LABEL_CONFIG.replace("BrushLabels", "PolygonLabels")
    err = _error(sam2_backend.post("/predict", json=body), 422, "unknown_label")
    assert "BrushLabels" in err["message"]
    _still_up(sam2_backend)


@pytest.mark.parametrize(
    "url, status, code, hint",
    [
        ("{closed}", 502, "image_unreachable", "gone.png"),
        ("{host}/missing.png", 502, "image_unreachable", "404"),
        ("{host}/notes.txt", 415, "image_not_decodable", "not a readable image"),
        ("{host}/truncated.png", 415, "image_not_decodable", "not a readable image"),
        ("{host}/huge.png", 413, "image_too_large", "SAM2_MAX_IMAGE_PIXELS"),
        ("{host}/big.bin", 413, "image_too_large", "SAM2_MAX_IMAGE_BYTES"),
        ("https://images.example.invalid/a.png", 422, "image_source_refused",
         "SAM2_ALLOWED_IMAGE_HOSTS"),
        ("/data/upload/1/a.png", 422, "image_source_refused", "LABEL_STUDIO_URL"),
        ("ftp://files/a.png", 422, "image_source_refused", "unsupported"),
        (data_uri(b"plain text, not pixels", "text/plain"), 415, "image_not_decodable",
         "not a readable image"),
    ],
)
def test_bad_images(sam2_backend, image_host, url, status, code, hint) -> None:
    url = url.format(host=image_host, closed=_closed_port_url())
    resp = sam2_backend.post("/predict", json=predict_body(url, GOOD), timeout=60)
    err = _error(resp, status, code)
    assert hint in err["message"]
    _still_up(sam2_backend)


def test_good_image_over_http_after_errors(sam2_backend, image_host) -> None:
    resp = sam2_backend.post("/predict",
                      json=predict_body(f"{image_host}/ok.png", GOOD), timeout=120)
    assert resp.status_code == 200, resp.text
    assert resp.json()["results"][0]["result"][0]["type"] == "brushlabels"


def test_missing_weights(tmp_path) -> None:
    """No checkpoint and random weights not allowed: the service stays up and says why."""
    backend = start_backend(tmp_path, expect_up=False, SAM2_ALLOW_RANDOM_WEIGHTS="0")
    try:
        health = backend.health()
        assert health.status_code == 503
        assert health.json()["status"] == "DOWN"
        assert health.json()["error"]["field"] == "SAM2_CHECKPOINT"
        for path, body in [
            ("/predict", predict_body(data_uri(sample_image(7)), GOOD)),
            ("/setup", {"project": "1.1", "schema": LABEL_CONFIG}),
        ]:
            err = _error(backend.post(path, json=body, timeout=30), 503,
                         "model_unavailable")
            assert "SAM2_CHECKPOINT" in err["message"]
        assert backend.proc.poll() is None
    finally:
        backend.stop()


def test_checkpoint_path_that_does_not_exist(tmp_path) -> None:
    backend = start_backend(
        tmp_path, expect_up=False, SAM2_ALLOW_RANDOM_WEIGHTS="0",
        SAM2_CHECKPOINT=str(tmp_path / "sam2.1_hiera_tiny.pt"), SAM2_CHECKPOINT_SHA256="0" * 64,
    )
    try:
        health = backend.health()
        assert health.status_code == 503
        assert "does not exist" in health.json()["error"]["message"]
    finally:
        backend.stop()


def test_bad_setting_fails_fast_with_the_name(tmp_path) -> None:
    import subprocess
    import sys

    from tests.backend_server import ROOT, TEST_ENV

    env = {**TEST_ENV, "SAM2_MODEL": "gigantic", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "backend", "--port", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "SAM2_MODEL" in proc.stderr and "gigantic" in proc.stderr
