"""Vectorized Label Studio brush RLE: the exact bytes of ``label_studio_sdk.converter.brush``.

Upstream writes a bit string: a 32-bit value count, the word size minus one (5 bits, 8), four
run-length field widths minus one (4 bits each: 3, 4, 8, 16), then one token per run:

* a run of one value: ``0`` ``00`` ``000`` + 8-bit value (a literal block of length 1);
* a longer run: ``1`` + 2-bit field index + (length - 1) in 3, 4, 8 or 16 bits + 8-bit value;
  runs longer than 2**16 are split into chunks of 2**16 first.

The string is padded with ``8 - bits % 8`` zeros (a whole zero byte when already aligned) and
cut into bytes. Here every token becomes one integer code with a bit width, the codes are
placed into 32-bit words with shifts and ``numpy.add.reduceat``.
"""

from __future__ import annotations

import numpy as np

_HEADER_WIDTHS = (3, 4, 8, 16)
_CHUNK = 2**16
# flag bit + 2-bit field index per class; a single value is a literal block: 0 00 + 000
_PREFIX = np.array([0b000, 0b100, 0b101, 0b110, 0b111], dtype=np.uint32)
_FIELD_BITS = np.array([3, 3, 4, 8, 16], dtype=np.uint32)


def _runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths and values of a 1-D array."""
    change = np.flatnonzero(flat[1:] != flat[:-1])
    ends = np.append(change, flat.size - 1)
    lengths = np.diff(np.append(-1, ends))
    return lengths.astype(np.int64), flat[ends].astype(np.uint32)


def _tokens(lengths: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token codes and their bit widths, in stream order."""
    # Split runs longer than 2**16: (L - 1) // 2**16 full chunks, then the remainder.
    # Every piece of a run longer than 256 keeps the 16-bit field, even a short remainder.
    full = np.maximum(lengths - 1, 0) // _CHUNK
    huge = lengths > 256
    if full.any():
        pieces = full + 1
        values = np.repeat(values, pieces)
        first = np.cumsum(pieces) - pieces  # index of each run's first piece
        new_lengths = np.full(int(pieces.sum()), _CHUNK, dtype=np.int64)
        last = first + full
        new_lengths[last] = lengths - full * _CHUNK
        lengths = new_lengths
        huge = np.repeat(huge, pieces)
    # length class: 0 single value, 1 run <= 8, 2 <= 16, 3 <= 256, 4 longer (16-bit field)
    cls = (
        (lengths > 1).view(np.int8)
        + (lengths > 8).view(np.int8)
        + (lengths > 16).view(np.int8)
        + (lengths > 256).view(np.int8)
    )
    cls[huge] = 4
    field = _FIELD_BITS[cls]
    n = (lengths - 1).astype(np.uint32)
    codes = (_PREFIX[cls] << (field + np.uint32(8))) | (n << np.uint32(8)) | values
    widths = field + np.uint32(11)
    return codes, widths


def _pack(codes: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Concatenate variable-width codes (each at most 32 bits) into zero-padded bytes.

    Each code is shifted into a 64-bit frame whose high half is its part of the 32-bit output
    word it starts in and whose low half is what spills into the next word. Codes never
    overlap, so summing the frames of the codes starting in each word (``add.reduceat``) adds
    no carries: high halves are the words, low halves their spills.
    """
    ends = np.cumsum(widths, dtype=np.int64)
    starts = ends - widths
    word = starts >> 5
    frames = codes.astype(np.uint64) << (64 - (starts & 31) - widths).astype(np.uint64)
    first = np.flatnonzero(np.r_[True, word[1:] != word[:-1]])  # every word has a start
    sums = np.add.reduceat(frames, first)
    words = np.empty(sums.size + 1, dtype=np.uint64)
    words[:-1] = sums >> np.uint64(32)
    words[-1] = 0
    words[1:] += sums & np.uint64(0xFFFFFFFF)
    return words.astype(">u4").view(np.uint8)


def encode_rle(arr: np.ndarray) -> list[int]:
    """Encode a 1-D array of values 0..255 exactly like upstream ``encode_rle`` (word size 8)."""
    flat = np.asarray(arr).ravel()
    if flat.size == 0:
        raise ValueError("cannot RLE-encode an empty array")
    if flat.size >= 2**32:
        raise ValueError(f"array of {flat.size} values is too long for a 32-bit RLE count")
    if flat.dtype != np.uint8 and (flat.min() < 0 or flat.max() > 255):
        raise ValueError("RLE values must lie in 0..255 (word size 8)")
    return _encode_runs(*_runs(flat), total=flat.size)


def _encode_runs(lengths: np.ndarray, values: np.ndarray, total: int) -> list[int]:
    header_code = (total << 21) | ((8 - 1) << 16)
    for i, width in enumerate(_HEADER_WIDTHS):
        header_code |= (width - 1) << (12 - 4 * i)
    codes, widths = _tokens(lengths, values)
    # the 53-bit header as two codes of 32 and 21 bits
    head = np.array([header_code >> 21, header_code & (2**21 - 1)], dtype=np.uint32)
    codes = np.concatenate([head, codes])
    widths = np.concatenate([np.array([32, 21], np.int64), widths.astype(np.int64)])
    bits = int(widths.sum())
    n_bytes = (bits + 8 - bits % 8) // 8  # upstream always pads, a whole byte when aligned
    return _pack(codes, widths)[:n_bytes].tolist()


def mask2rle(mask: np.ndarray) -> list[int]:
    """Label Studio brush RLE of a 2-D mask (each pixel repeated 4 times, RGBA)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    if mask.dtype == bool:
        mask = mask.astype(np.uint8)
    flat = mask.ravel()
    if flat.size == 0:
        raise ValueError("cannot RLE-encode an empty mask")
    if flat.dtype != np.uint8 and (flat.min() < 0 or flat.max() > 255):
        raise ValueError("mask values must lie in 0..255")
    if flat.size * 4 >= 2**32:
        raise ValueError(f"mask of {flat.size} pixels is too large for a 32-bit RLE count")
    lengths, values = _runs(flat)  # runs over pixels; repeating each pixel 4x scales them
    return _encode_runs(lengths * 4, values, total=flat.size * 4)
