"""backend.rle produces exactly the bytes of label_studio_sdk.converter.brush."""

from __future__ import annotations

import numpy as np
import pytest
from label_studio_sdk.converter import brush

from backend import rle

SHAPES = [(1, 1), (1, 2), (3, 5), (7, 13), (192, 256), (255, 257), (1, 70_001), (331, 199)]


def _structured(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Blobs with ragged edges plus thin lines: runs of every length class."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    rng = np.random.default_rng(seed)
    m = np.sin(xx / (3 + seed)) * np.cos(yy / (2 + seed)) > 0.2
    m |= (xx + yy) % 17 == 0
    m ^= rng.random(shape) > 0.995
    return m.astype(np.uint8) * 255


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["random", "structured", "empty", "full", "multivalue"])
def test_mask2rle_bytes_match_upstream(shape: tuple[int, int], kind: str) -> None:
    rng = np.random.default_rng(hash((shape, kind)) % 2**32)
    mask = {
        "random": lambda: (rng.random(shape) > 0.5).astype(np.uint8) * 255,
        "structured": lambda: _structured(shape, 3),
        "empty": lambda: np.zeros(shape, np.uint8),
        "full": lambda: np.full(shape, 255, np.uint8),
        "multivalue": lambda: rng.integers(0, 256, shape, dtype=np.uint8),
    }[kind]()
    ours = rle.mask2rle(mask)
    assert ours == brush.mask2rle(mask)
    assert all(isinstance(b, int) for b in ours)


@pytest.mark.parametrize(
    "length", [1, 2, 8, 9, 16, 17, 256, 257, 65_536, 65_537, 131_072, 131_073, 200_003]
)
def test_encode_rle_run_length_boundaries(length: int) -> None:
    """Every field width, and runs split into 2**16 chunks, including a remainder of one."""
    arr = np.concatenate([[3, 4], np.full(length, 9), [7]]).astype(np.uint8)
    assert rle.encode_rle(arr) == brush.encode_rle(arr)


def test_encode_rle_single_values_and_int_dtype() -> None:
    arr = np.arange(300) % 256  # int64, all runs of one
    assert rle.encode_rle(arr) == brush.encode_rle(arr)
    mask = (np.arange(60).reshape(6, 10) % 3 == 0).astype(int)
    assert rle.mask2rle(mask) == brush.mask2rle(mask)


def test_decodes_back_with_upstream() -> None:
    mask = _structured((97, 131), 1)
    flat = brush.decode_rle(rle.mask2rle(mask))
    np.testing.assert_array_equal(flat.reshape(97, 131, 4)[:, :, 3], mask)


def test_bool_mask_is_encoded_as_zero_one() -> None:
    mask = _structured((40, 50), 2) > 0
    assert rle.mask2rle(mask) == brush.mask2rle(mask.astype(np.uint8))


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 2, 2), np.uint8), "2-D"),
        (np.zeros((0, 4), np.uint8), "empty"),
        (np.full((2, 2), 300), "0..255"),
        (np.full((2, 2), -1), "0..255"),
    ],
)
def test_bad_masks_are_refused_clearly(bad: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rle.mask2rle(bad)
