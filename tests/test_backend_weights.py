"""Weights: local path or s3:// in the model bucket, sha256 verified, never the internet."""

from __future__ import annotations

import hashlib

import pytest
import torch

from backend.errors import WeightsError
from backend.settings import Settings
from backend.weights import resolve_checkpoint
from tests.backend_server import data_uri, keypoint, predict_body, sample_image, start_backend


def _settings(**kw) -> Settings:
    return Settings(model="tiny", device="cpu", **kw)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_no_checkpoint_is_an_error_unless_random_weights_are_allowed() -> None:
    with pytest.raises(WeightsError) as err:
        resolve_checkpoint(_settings())
    assert err.value.field == "SAM2_CHECKPOINT" and "SAM2_ALLOW_RANDOM_WEIGHTS" in str(err.value)
    assert resolve_checkpoint(_settings(allow_random_weights=True)) is None


@pytest.mark.parametrize("uri", ["https://dl.fbaipublicfiles.com/segment_anything_2/x.pt",
                                 "http://10.0.0.1/x.pt", "hf://facebook/sam2.1-hiera-tiny"])
def test_internet_sources_are_refused(uri: str) -> None:
    with pytest.raises(WeightsError, match="never fetched from the internet"):
        resolve_checkpoint(_settings(checkpoint=uri, checkpoint_sha256="a" * 64))


def test_checkpoint_needs_a_digest(tmp_path) -> None:
    path = tmp_path / "w.pt"
    path.write_bytes(b"x")
    with pytest.raises(WeightsError) as err:
        resolve_checkpoint(_settings(checkpoint=str(path)))
    assert err.value.field == "SAM2_CHECKPOINT_SHA256"


def test_bad_digest_setting_names_the_variable() -> None:
    with pytest.raises(ValueError, match="SAM2_CHECKPOINT_SHA256"):
        _settings(checkpoint_sha256="not-hex")


def test_local_checkpoint_verified(tmp_path) -> None:
    path = tmp_path / "w.pt"
    path.write_bytes(b"weights")
    assert resolve_checkpoint(_settings(checkpoint=str(path),
                                        checkpoint_sha256=_sha(b"weights"))) == path
    with pytest.raises(WeightsError) as err:
        resolve_checkpoint(_settings(checkpoint=str(path), checkpoint_sha256=_sha(b"other")))
    assert _sha(b"weights") in str(err.value) and _sha(b"other") in str(err.value)


@pytest.mark.servers
def test_s3_checkpoint_downloaded_verified_and_reused(s3_server, tmp_path, monkeypatch) -> None:
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    s3 = s3_server.client()
    s3.create_bucket(Bucket="labelstack-models")
    s3.put_object(Bucket="labelstack-models", Key="sam2/w.pt", Body=b"real weights")
    settings = _settings(checkpoint="s3://labelstack-models/sam2/w.pt",
                         checkpoint_sha256=_sha(b"real weights"),
                         s3_endpoint_url=s3_server.endpoint_url, weights_dir=str(tmp_path))
    path = resolve_checkpoint(settings)
    assert path.read_bytes() == b"real weights" and path.parent == tmp_path
    s3.delete_object(Bucket="labelstack-models", Key="sam2/w.pt")
    assert resolve_checkpoint(settings) == path  # verified local copy, no second download

    s3.put_object(Bucket="labelstack-models", Key="sam2/tampered.pt", Body=b"evil weights")
    bad = settings.model_copy(update={"checkpoint": "s3://labelstack-models/sam2/tampered.pt",
                                      "weights_dir": str(tmp_path / "b")})
    with pytest.raises(WeightsError, match="sha256"):
        resolve_checkpoint(bad)
    assert not any((tmp_path / "b").iterdir())  # nothing unverified left behind

    missing = settings.model_copy(update={"checkpoint": "s3://labelstack-models/nope.pt",
                                          "weights_dir": str(tmp_path / "c")})
    with pytest.raises(WeightsError, match="model bucket"):
        resolve_checkpoint(missing)


@pytest.mark.sam2
def test_backend_serves_a_verified_checkpoint(tmp_path) -> None:
    """A checkpoint in SAM2's own format ({"model": state_dict}) is loaded and named."""
    from backend.model import Segmenter

    source = Segmenter(_settings(allow_random_weights=True, random_seed=7))
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": source.predictor.model.state_dict()}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    backend = start_backend(tmp_path, SAM2_ALLOW_RANDOM_WEIGHTS="0", SAM2_CHECKPOINT=str(path),
                            SAM2_CHECKPOINT_SHA256=digest, SAM2_RANDOM_SEED="99")
    try:
        health = backend.health().json()
        assert health["model_version"] == f"sam2.1_hiera_t:{digest[:12]}"
        png = sample_image(9)
        resp = backend.post("/predict", timeout=120,
                          json=predict_body(data_uri(png), [keypoint(40, 50)]))
        assert resp.status_code == 200, resp.text
    finally:
        backend.stop()
    # same weights in-process (seed 7) give the same answer as the checkpointed backend
    import io

    import numpy as np
    from PIL import Image

    from backend.model import Prompt
    from tests.backend_server import decode_region

    rgb = np.array(Image.open(io.BytesIO(png)).convert("RGB"))
    ref = source.segment("k", rgb, [Prompt(np.array([[0.4 * 256, 0.5 * 192]], np.float32),
                                           np.array([1], np.int32))])[0]
    mask = decode_region(resp.json()["results"][0]["result"][0])
    np.testing.assert_array_equal(mask, ref.mask.astype(np.uint8) * 255)
