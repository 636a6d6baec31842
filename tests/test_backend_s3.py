"""S3 direct mode: s3:// task images read straight from the bucket (IRSA in the cluster)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.backend_server import (
    BackendProcess,
    keypoint,
    predict_body,
    sample_image,
    start_backend,
)

pytestmark = [pytest.mark.servers, pytest.mark.sam2]


@pytest.fixture(scope="module")
def s3_backend(s3_server, tmp_path_factory) -> Iterator[BackendProcess]:
    s3 = s3_server.client()
    s3.create_bucket(Bucket="labelstack-images")
    s3.put_object(Bucket="labelstack-images", Key="ct/slice-1.png", Body=sample_image(401))
    s3.put_object(Bucket="labelstack-images", Key="ct/notes.txt", Body=b"no pixels here")
    backend = start_backend(
        tmp_path_factory.mktemp("sam2-s3"),
        SAM2_S3_DIRECT="1",
        SAM2_S3_ENDPOINT_URL=s3_server.endpoint_url,
        AWS_ACCESS_KEY_ID=s3_server.access_key,
        AWS_SECRET_ACCESS_KEY=s3_server.secret_key,
        AWS_DEFAULT_REGION=s3_server.region,
    )
    try:
        yield backend
    finally:
        backend.stop()


def test_s3_image_is_segmented(s3_backend) -> None:
    body = predict_body("s3://labelstack-images/ct/slice-1.png", [keypoint(45, 50)])
    resp = s3_backend.post("/predict", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    region = resp.json()["results"][0]["result"][0]
    assert (region["original_width"], region["original_height"]) == (256, 192)


@pytest.mark.parametrize(
    "uri, status, code",
    [
        ("s3://labelstack-images/ct/missing.png", 502, "image_unreachable"),
        ("s3://no-such-bucket/x.png", 502, "image_unreachable"),
        ("s3://labelstack-images/ct/notes.txt", 415, "image_not_decodable"),
    ],
)
def test_s3_errors(s3_backend, uri, status, code) -> None:
    resp = s3_backend.post("/predict", json=predict_body(uri, [keypoint(45, 50)]))
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code
    assert s3_backend.health().json()["status"] == "UP"
