"""The SAM2 backend as a real process: Label Studio-shaped clicks in, brush masks out.

The reference masks come from an in-process Segmenter built from the same config and seed
(the same random weights), fed prompts converted to pixels here by hand.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from backend.model import Prompt, Segmenter
from backend.settings import Settings
from tests.backend_server import (
    data_uri,
    decode_region,
    keypoint,
    predict_body,
    rectangle,
    sample_image,
    wait_prewarm_idle,
)

pytestmark = pytest.mark.sam2

W, H = 256, 192


@pytest.fixture(scope="module")
def reference() -> Segmenter:
    """Same architecture, config and seed as the sam2_backend process."""
    return Segmenter(
        Settings(model="tiny", device="cpu", allow_random_weights=True, random_seed=0,
                 torch_threads=2)
    )


def _rgb(png: bytes) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(png)).convert("RGB"))


def _prompt(points=(), labels=(), box=None) -> Prompt:
    return Prompt(
        points=np.array(points, np.float32).reshape(-1, 2),
        labels=np.array(labels, np.int32),
        box=None if box is None else np.array(box, np.float32),
    )


def _post(backend, body: dict) -> httpx.Response:
    return backend.post("/predict", json=body, timeout=120)


def test_keypoints_round_trip(sam2_backend, reference) -> None:
    png = sample_image(1)
    # a positive click without is_positive (Label Studio omits it) and an Alt (negative) click
    items = [keypoint(30, 40), keypoint(70, 60, positive=False)]
    resp = _post(sam2_backend, predict_body(data_uri(png), items))
    assert resp.status_code == 200, resp.text
    answer = resp.json()["results"][0]
    assert answer["model_version"] == "sam2.1_hiera_t:random"
    (region,) = answer["result"]
    assert region["type"] == "brushlabels"
    assert (region["from_name"], region["to_name"]) == ("tag", "image")
    assert (region["original_width"], region["original_height"]) == (W, H)
    assert region["value"]["format"] == "rle"
    assert region["value"]["brushlabels"] == ["Lesion"]

    ref = reference.segment(
        "kp", _rgb(png), [_prompt([(0.30 * W, 0.40 * H), (0.70 * W, 0.60 * H)], [1, 0])]
    )[0]
    mask = decode_region(region)
    assert 0 < ref.mask.sum() < ref.mask.size  # a real mask, not empty or full
    np.testing.assert_array_equal(mask, ref.mask.astype(np.uint8) * 255)
    assert region["score"] == pytest.approx(ref.score, abs=1e-5)
    assert answer["score"] == pytest.approx(ref.score, abs=1e-5)


def test_negative_click_changes_the_mask(sam2_backend) -> None:
    uri = data_uri(sample_image(1))
    pos = _post(sam2_backend, predict_body(uri, [keypoint(30, 40), keypoint(70, 60)]))
    negative = [keypoint(30, 40), keypoint(70, 60, positive=False)]
    neg = _post(sam2_backend, predict_body(uri, negative))
    a, b = (decode_region(r.json()["results"][0]["result"][0]) for r in (pos, neg))
    assert not np.array_equal(a, b)


def test_rectangles_give_one_mask_each(sam2_backend, reference) -> None:
    png = sample_image(2)
    items = [
        rectangle(10, 10, 40, 50),  # box A: 25.6..128 x 19.2..115.2 px
        rectangle(55, 40, 40, 50),  # box B
        keypoint(20, 30),  # inside A only
        keypoint(5, 95, positive=False),  # inside neither: applies to both
    ]
    resp = _post(sam2_backend, predict_body(data_uri(png), items))
    assert resp.status_code == 200, resp.text
    regions = resp.json()["results"][0]["result"]
    assert len(regions) == 2
    box_a = (0.10 * W, 0.10 * H, 0.50 * W, 0.60 * H)
    box_b = (0.55 * W, 0.40 * H, 0.95 * W, 0.90 * H)
    inside, outside = (0.20 * W, 0.30 * H), (0.05 * W, 0.95 * H)
    refs = reference.segment(
        "rects",
        _rgb(png),
        [_prompt([inside, outside], [1, 0], box_a), _prompt([outside], [0], box_b)],
    )
    for region, ref in zip(regions, refs, strict=True):
        np.testing.assert_array_equal(decode_region(region), ref.mask.astype(np.uint8) * 255)
    assert not np.array_equal(decode_region(regions[0]), decode_region(regions[1]))


def test_two_labels_give_two_regions(sam2_backend) -> None:
    items = [keypoint(30, 40, "Lesion"), keypoint(70, 60, "Organ")]
    resp = _post(sam2_backend, predict_body(data_uri(sample_image(1)), items))
    assert resp.status_code == 200, resp.text
    labels = [r["value"]["brushlabels"] for r in resp.json()["results"][0]["result"]]
    assert labels == [["Lesion"], ["Organ"]]


def test_second_click_uses_cached_embedding(sam2_backend) -> None:
    uri = data_uri(sample_image(101))
    before = sam2_backend.health().json()
    first = _post(sam2_backend, predict_body(uri, [keypoint(40, 40)]))
    mid = sam2_backend.health().json()
    second = _post(sam2_backend, predict_body(uri, [keypoint(40, 40), keypoint(60, 50)]))
    after = sam2_backend.health().json()
    assert first.status_code == second.status_code == 200
    assert mid["encoder_calls"] == before["encoder_calls"] + 1  # first click: encoder ran
    assert after["encoder_calls"] == mid["encoder_calls"]  # second click: decoder only
    assert after["cache"]["hits"] == mid["cache"]["hits"] + 1


def test_same_content_under_another_url_hits_the_cache(sam2_backend) -> None:
    png = sample_image(102)
    _post(sam2_backend, predict_body(data_uri(png), [keypoint(40, 40)]))
    before = sam2_backend.health().json()["encoder_calls"]
    _post(sam2_backend, predict_body(data_uri(png, "image/x-png"), [keypoint(41, 40)]))
    assert sam2_backend.health().json()["encoder_calls"] == before


def test_parallel_requests_on_different_images(sam2_backend, reference) -> None:
    seeds = [201, 202, 203]
    pngs = [sample_image(s) for s in seeds]
    items = [keypoint(35, 45), keypoint(60, 55)]
    before = sam2_backend.health().json()["encoder_calls"]
    with ThreadPoolExecutor(len(seeds)) as pool:
        futures = [
            pool.submit(_post, sam2_backend, predict_body(data_uri(p), items, task_id=i))
            for i, p in enumerate(pngs)
        ]
        # the model is busy with three encoder passes; health still answers meanwhile
        health = sam2_backend.health()
        busy = not all(f.done() for f in futures)
        responses = [f.result() for f in futures]
    assert health.status_code == 200
    assert busy, "all predictions finished before /health answered"
    assert sam2_backend.health().json()["encoder_calls"] == before + len(seeds)
    masks = []
    for png, resp in zip(pngs, responses, strict=True):
        assert resp.status_code == 200, resp.text
        mask = decode_region(resp.json()["results"][0]["result"][0])
        ref = reference.segment(
            f"p{png[-16:].hex()}", _rgb(png),
            [_prompt([(0.35 * W, 0.45 * H), (0.60 * W, 0.55 * H)], [1, 1])],
        )[0]
        np.testing.assert_array_equal(mask, ref.mask.astype(np.uint8) * 255)
        masks.append(mask)
    assert not np.array_equal(masks[0], masks[1])
    assert not np.array_equal(masks[1], masks[2])


def test_exif_orientation_is_applied(sam2_backend) -> None:
    """A JPEG stored landscape with EXIF 'rotate 90' is segmented as the portrait it shows."""
    im = Image.open(io.BytesIO(sample_image(5)))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif)
    resp = _post(sam2_backend, predict_body(data_uri(buf.getvalue(), "image/jpeg"),
                                                [keypoint(50, 50)]))
    assert resp.status_code == 200, resp.text
    region = resp.json()["results"][0]["result"][0]
    assert (region["original_width"], region["original_height"]) == (H, W)
    assert decode_region(region).shape == (W, H)


def test_no_context_means_no_prediction(sam2_backend) -> None:
    """A task opened: one empty list of predictions per task (Label Studio stores none)."""
    body = predict_body(data_uri(sample_image(111)), [])
    body["params"]["context"] = None
    body["tasks"].append({"id": 2, "data": {"image": data_uri(sample_image(112))}})
    before = sam2_backend.health().json()
    resp = _post(sam2_backend, body)
    assert resp.status_code == 200
    assert resp.json() == {"results": [[], []]}
    after = wait_prewarm_idle(sam2_backend)  # both images encoded in the background
    assert after["prewarm"]["scheduled"] == before["prewarm"]["scheduled"] + 2
    assert after["encoder_calls"] == before["encoder_calls"] + 2


def test_setup_and_webhook(sam2_backend) -> None:
    setup = sam2_backend.post("/setup", json={"project": "1.1", "schema": "<View/>"})
    assert setup.json() == {"model_version": "sam2.1_hiera_t:random"}
    hook = sam2_backend.post("/webhook", json={"action": "ANNOTATION_CREATED"})
    assert hook.status_code == 200
