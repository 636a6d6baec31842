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


def _mask(kind: str, shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(hash((shape, kind, seed)) % 2**32)
    return {
        "random": lambda: (rng.random(shape) > 0.5).astype(np.uint8) * 255,
        "structured": lambda: _structured(shape, seed),
        "empty": lambda: np.zeros(shape, np.uint8),
        "full": lambda: np.full(shape, 255, np.uint8),
        "multivalue": lambda: rng.integers(0, 256, shape, dtype=np.uint8),
    }[kind]()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["random", "structured", "empty", "full", "multivalue"])
def test_mask2rle_bytes_match_upstream(shape: tuple[int, int], kind: str) -> None:
    mask = _mask(kind, shape, seed=3)
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


# ------------------------------------------------------------------------------------ decoding


def _stream(tokens: list[tuple], word_size: int = 8, sizes=(3, 4, 8, 16)) -> list[int]:
    """A brush RLE written token by token, as any encoder may (literal blocks included).

    Tokens: ("run", field, length, value) or ("lit", field, [values]).
    """
    total = sum(t[2] if t[0] == "run" else len(t[2]) for t in tokens)
    bits = f"{total:032b}{word_size - 1:05b}" + "".join(f"{s - 1:04b}" for s in sizes)
    for token in tokens:
        if token[0] == "run":
            _, field, length, value = token
            bits += f"1{field:02b}{length - 1:0{sizes[field]}b}{value:0{word_size}b}"
        else:
            _, field, values = token
            bits += f"0{field:02b}{len(values) - 1:0{sizes[field]}b}"
            bits += "".join(f"{v:0{word_size}b}" for v in values)
    bits += "0" * (8 - len(bits) % 8)
    return [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["random", "structured", "empty", "full", "multivalue"])
def test_decode_rle_matches_upstream(shape: tuple[int, int], kind: str) -> None:
    mask = _mask(kind, shape, seed=4)
    encoded = rle.mask2rle(mask)
    ours = rle.decode_rle(encoded)
    assert ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, brush.decode_rle(encoded))
    np.testing.assert_array_equal(rle.rle_to_mask(encoded, *shape), mask)


@pytest.mark.parametrize("length", [1, 9, 17, 257, 65_536, 65_537, 131_073, 200_003])
def test_decode_runs_longer_than_2_16(length: int) -> None:
    arr = np.concatenate([[3, 4], np.full(length, 9), [7]]).astype(np.uint8)
    encoded = rle.encode_rle(arr)
    np.testing.assert_array_equal(rle.decode_rle(encoded), brush.decode_rle(encoded))
    np.testing.assert_array_equal(rle.decode_rle(encoded), arr)


def test_decode_literal_blocks_of_every_field_width() -> None:
    """Browser-written streams group single values into literal blocks of any count width."""
    rng = np.random.default_rng(7)
    tokens = [("lit", 0, [1, 2, 3]), ("run", 1, 12, 255), ("lit", 1, list(range(16))),
              ("run", 0, 2, 0), ("lit", 2, rng.integers(0, 256, 200).tolist()),
              ("run", 3, 70_000, 128), ("lit", 3, rng.integers(0, 256, 300).tolist()),
              ("lit", 0, [9]), ("run", 2, 256, 17)]
    encoded = _stream(tokens)
    np.testing.assert_array_equal(rle.decode_rle(encoded), brush.decode_rle(encoded))
    # many literal blocks one after another, the slow path taken again and again
    encoded = _stream([("lit", 1, [i % 256, (i + 1) % 256]) for i in range(500)])
    np.testing.assert_array_equal(rle.decode_rle(encoded), brush.decode_rle(encoded))


@pytest.mark.parametrize("word_size, sizes", [(8, (2, 5, 9, 16)), (4, (3, 4, 8, 16)),
                                              (10, (8, 4, 3, 1)), (1, (1, 1, 1, 1))])
def test_decode_other_headers(word_size: int, sizes: tuple[int, ...]) -> None:
    top = min(2**word_size, 256)
    tokens = [("run", i % 4, min(2 ** sizes[i % 4], 3 + i), i % top) for i in range(40)]
    tokens += [("lit", 0, [v % top for v in range(min(2 ** sizes[0], 5))])]
    encoded = _stream(tokens, word_size, sizes)
    np.testing.assert_array_equal(rle.decode_rle(encoded), brush.decode_rle(encoded))


def test_decode_accepts_bytes_and_arrays() -> None:
    encoded = rle.mask2rle(_structured((20, 30), 1))
    expected = brush.decode_rle(encoded)
    np.testing.assert_array_equal(rle.decode_rle(bytes(encoded)), expected)
    np.testing.assert_array_equal(rle.decode_rle(np.array(encoded, dtype=np.int64)), expected)


def test_rle_to_mask_refuses_a_size_that_disagrees() -> None:
    encoded = rle.mask2rle(_structured((20, 30), 1))
    with pytest.raises(ValueError, match=r"2400 values.*20 x 31 x 4 = 2480"):
        rle.rle_to_mask(encoded, 20, 31)


@pytest.mark.parametrize(
    "bad, message",
    [
        ([1, 2, 3], "shorter than its 53-bit header"),
        ([300, 0, 0, 0, 0, 0, 0], "0..255"),
        ("not an rle", "byte values"),
        (None, "byte values"),
    ],
)
def test_decode_refuses_malformed_input(bad, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rle.decode_rle(bad)


def test_decode_refuses_a_truncated_stream() -> None:
    encoded = rle.mask2rle(_structured((40, 50), 3))
    with pytest.raises(ValueError, match="truncated"):
        rle.decode_rle(encoded[: len(encoded) // 2])
    header_only = _stream([("run", 0, 4, 1)])[:7]
    with pytest.raises(ValueError, match="truncated"):
        rle.decode_rle(header_only)


def test_rle_to_mask_picks_a_channel_when_channels_differ() -> None:
    rgba = np.zeros((3, 5, 4), np.uint8)
    rgba[1:, 2:] = (255, 0, 0, 255)  # red brush: R and A set, G and B not
    encoded = rle.encode_rle(rgba.ravel())
    assert rle.rle_length(encoded) == 60
    np.testing.assert_array_equal(rle.rle_to_mask(encoded, 3, 5, channel=3), rgba[:, :, 3])
    np.testing.assert_array_equal(rle.rle_to_mask(encoded, 3, 5, channel=1), rgba[:, :, 1])
    reference = brush.decode_rle(encoded).reshape(3, 5, 4)
    np.testing.assert_array_equal(rle.rle_to_mask(encoded, 3, 5), reference[:, :, 0])


def _lengths_and_pairs(encoded: list[int]):
    data = rle._as_bytes(encoded)
    pairs = rle._pairs(data)
    padded = np.zeros(data.size + 16, dtype=np.uint64)
    np.take(rle._length_bytes(8, (3, 4, 8, 16)), pairs, out=padded[: data.size])
    return padded.view(np.uint8), pairs, data.size * 8


@pytest.mark.parametrize("probe_tokens", [8, 2, 1])
def test_parallel_block_walk_is_exact_whatever_its_guesses(monkeypatch, probe_tokens) -> None:
    """Weaker entry guesses mean more blocks walked again, never a different answer."""
    yy, xx = np.mgrid[:768, :1024]
    mask = ((np.sin(xx / 7.0) * np.cos(yy / 5.0) > 0.1)
            ^ (np.random.default_rng(5).random((768, 1024)) > 0.99)).astype(np.uint8) * 255
    encoded = rle.mask2rle(mask)
    lengths, pairs, bits = _lengths_and_pairs(encoded)
    assert bits > rle._PARALLEL_MIN_BITS
    monkeypatch.setattr(rle, "_PROBE_TOKENS", probe_tokens)
    walks = []
    walk = rle._walk
    monkeypatch.setattr(rle, "_walk", lambda *a: walks.append(a[1].size) or walk(*a))
    found = rle._walk_blocks(lengths, pairs, bits)
    chain = rle._walk_chain(lengths[:bits])
    if found is not None:
        np.testing.assert_array_equal(found, chain)
        assert len(walks) >= 2  # some guesses were wrong and walked again
    np.testing.assert_array_equal(rle.rle_to_mask(encoded, 768, 1024), mask)


def test_parallel_walk_with_long_literal_tokens_across_blocks() -> None:
    """Literal blocks of up to 8 values (70 bits) start beyond the 27 guessed offsets."""
    rng = np.random.default_rng(11)
    tokens = []
    for i in range(20_000):
        if i % 3:
            tokens.append(("lit", 0, rng.choice([0, 255], int(rng.integers(1, 9))).tolist()))
        else:
            tokens.append(("run", int(rng.integers(0, 4)), int(rng.integers(1, 9)), 255))
    encoded = _stream(tokens)
    assert len(encoded) * 8 > rle._PARALLEL_MIN_BITS
    np.testing.assert_array_equal(rle.decode_rle(encoded), brush.decode_rle(encoded))
