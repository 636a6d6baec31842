"""Vectorized Label Studio brush RLE: the exact bytes of ``label_studio_sdk.converter.brush``.

Upstream writes a bit string: a 32-bit value count, the word size minus one (5 bits, 8), four
run-length field widths minus one (4 bits each: 3, 4, 8, 16), then one token per run:

* a run of one value: ``0`` ``00`` ``000`` + 8-bit value (a literal block of length 1);
* a longer run: ``1`` + 2-bit field index + (length - 1) in 3, 4, 8 or 16 bits + 8-bit value;
  runs longer than 2**16 are split into chunks of 2**16 first.

The string is padded with ``8 - bits % 8`` zeros (a whole zero byte when already aligned) and
cut into bytes. Here every token becomes one integer code with a bit width, the codes are
left-aligned in 32-bit words, and ``numpy.unpackbits`` / ``packbits`` do the bit stream.
"""

from __future__ import annotations

import numpy as np

_HEADER_WIDTHS = (3, 4, 8, 16)
_CHUNK = 2**16


def _runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths and values of a 1-D array."""
    change = np.flatnonzero(flat[1:] != flat[:-1])
    ends = np.append(change, flat.size - 1)
    lengths = np.diff(np.append(-1, ends))
    return lengths.astype(np.int64), flat[ends].astype(np.uint64)


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
    lengths = lengths.astype(np.uint64)
    n = lengths - np.uint64(1)
    codes = np.empty(lengths.size, dtype=np.uint64)
    widths = np.empty(lengths.size, dtype=np.uint64)
    single = (lengths == 1) & ~huge
    small = (lengths > 1) & (lengths <= 8) & ~huge
    mid = (lengths > 8) & (lengths <= 16) & ~huge
    big = (lengths > 16) & (lengths <= 256) & ~huge
    # flag | index | length-1 | value, most significant first
    codes[single] = values[single]
    widths[single] = 14
    codes[small] = (np.uint64(1) << np.uint64(13)) | (n[small] << np.uint64(8)) | values[small]
    widths[small] = 14
    codes[mid] = (np.uint64(0b101) << np.uint64(12)) | (n[mid] << np.uint64(8)) | values[mid]
    widths[mid] = 15
    codes[big] = (np.uint64(0b110) << np.uint64(16)) | (n[big] << np.uint64(8)) | values[big]
    widths[big] = 19
    codes[huge] = (np.uint64(0b111) << np.uint64(24)) | (n[huge] << np.uint64(8)) | values[huge]
    widths[huge] = 27
    return codes, widths


def _bitstream(codes: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """The concatenated bits (uint8 0/1) of variable-width codes."""
    aligned = (codes << (np.uint64(32) - widths)).astype(">u4")
    bits = np.unpackbits(aligned.view(np.uint8)).reshape(-1, 32)
    keep = np.arange(32, dtype=np.uint64)[None, :] < widths[:, None]
    return bits[keep]


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
    header_bytes = np.frombuffer((header_code << 3).to_bytes(7, "big"), dtype=np.uint8)
    header = np.unpackbits(header_bytes)[:53]
    codes, widths = _tokens(lengths, values)
    body = _bitstream(codes, widths)
    pad = 8 - (header.size + body.size) % 8
    stream = np.concatenate([header, body, np.zeros(pad, dtype=np.uint8)])
    return np.packbits(stream).tolist()


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
