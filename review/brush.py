"""Brush masks as pixel intervals, and their IoU, straight from Label Studio's RLE.

A Label Studio brush RLE is a bit stream over the RGBA bytes of the mask (header: 32-bit value
count, word size - 1 in 5 bits, four run-length field widths - 1 in 4 bits each; then tokens:
flag bit, 2-bit field index, run length - 1 in that field's width, then one value for a run or
``length`` values for a literal block). Decoding it to an H*W*4 array costs megabytes per mask;
agreement needs only which pixels are set, so here the stream is walked token by token (one
table look-up per token on a precomputed 3-bit head per bit position), the fields are read with
vectorized gathers, and the mask stays a sorted list of half-open pixel intervals ``[s, e)``.
IoU of interval lists is a merge of their union: no per-pixel array is ever built.

A pixel is set when its alpha byte (RGBA channel 3) is non-zero, as in the converter's
``decode_from_annotation``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_EMPTY = np.zeros(0, dtype=np.int64)
Intervals = tuple[np.ndarray, np.ndarray]  # (starts, ends), sorted, disjoint, half-open


class RLEError(ValueError):
    """A brush RLE that cannot be read (truncated, or not the size of its image)."""


def _read(bits: np.ndarray, start: int, width: int) -> int:
    value = 0
    for b in bits[start:start + width].tolist():
        value = (value << 1) | b
    return value


def rle_runs(rle: Sequence[int] | bytes) -> tuple[int, np.ndarray, np.ndarray]:
    """The runs of a brush RLE: (value count, run ends, run values), in stream order.

    Run ``i`` covers bytes ``[ends[i-1], ends[i])`` of the flat RGBA array (``ends[-1]`` is
    the value count)."""
    raw = np.frombuffer(bytes(rle), dtype=np.uint8)
    n_bits = raw.size * 8
    if n_bits < 53:
        raise RLEError(f"brush RLE of {raw.size} bytes is shorter than its 53-bit header")
    bits = np.concatenate([np.unpackbits(raw), np.zeros(64, np.uint8)])
    num = _read(bits, 0, 32)
    word = _read(bits, 32, 5) + 1
    sizes = [_read(bits, 37 + 4 * i, 4) + 1 for i in range(4)]
    # head[p] = flag bit and field index of a token starting at bit p
    head = (bits[:-2] << 2 | bits[1:-1] << 1 | bits[2:]).tobytes()
    run_len = [-1] * 4 + [3 + s + word for s in sizes]  # runs: fixed token length
    starts: list[int] = []
    push = starts.append
    p, limit = 53, n_bits - 3
    # walk token starts: a literal block's length depends on its count field (rare: slow path)
    while p < limit:
        h = head[p]
        step = run_len[h]
        if step < 0:
            s = sizes[h & 3]
            step = 3 + s + word * (_read(bits, p + 3, s) + 1)
        push(p)
        p += step
    if not starts:
        raise RLEError("brush RLE holds no run")
    ps = np.asarray(starts, dtype=np.int64)
    heads = np.frombuffer(head, dtype=np.uint8)[ps]
    is_run = heads >> 2 == 1
    size = np.asarray(sizes, dtype=np.int64)[heads & 3]
    # the count field: up to 16 bits after the 3-bit head, then masked to its width
    span = np.arange(16, dtype=np.int64)
    field_bits = bits[ps[:, None] + 3 + span].astype(np.int64)
    weights = np.where(span[None, :] < size[:, None],
                       np.left_shift(1, np.maximum(size[:, None] - 1 - span[None, :], 0)), 0)
    count = (field_bits * weights).sum(axis=1) + 1
    # one output run per run token, `count` runs of length 1 per literal block
    pieces = np.where(is_run, 1, count)
    token = np.repeat(np.arange(ps.size), pieces)
    k = np.arange(token.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    value_at = np.minimum(ps[token] + 3 + size[token] + word * k, bits.size - word)
    wspan = np.arange(word, dtype=np.int64)
    values = (bits[value_at[:, None] + wspan].astype(np.int64)
              << (word - 1 - wspan)).sum(axis=1)
    lengths = np.where(is_run[token], count[token], 1)
    ends = np.cumsum(lengths)
    if ends[-1] < num:
        raise RLEError(f"brush RLE truncated: its runs cover {int(ends[-1])} of {num} values")
    keep = int(np.searchsorted(ends, num)) + 1  # trailing padding may parse as extra tokens
    ends = ends[:keep]
    ends[-1] = num
    return num, ends, values[:keep]


def rle_intervals(rle: Sequence[int] | bytes, width: int, height: int) -> Intervals:
    """Set pixels of a brush RLE as sorted, disjoint pixel intervals (row-major index)."""
    num, ends, values = rle_runs(rle)
    if num != width * height * 4:
        raise RLEError(f"brush RLE holds {num} values, its image {width}x{height} needs "
                       f"{width * height * 4} (RGBA)")
    on = values > 0
    starts = (ends - np.diff(ends, prepend=0))[on]
    # byte 4k+3 (alpha) of pixel k lies in [s, e)  <=>  s//4 <= k < e//4
    lo, hi = starts // 4, ends[on] // 4
    keep = hi > lo
    return merge(lo[keep], hi[keep])


def merge(starts: np.ndarray, ends: np.ndarray) -> Intervals:
    """Union of half-open intervals as sorted, disjoint, non-touching intervals."""
    if starts.size == 0:
        return _EMPTY, _EMPTY
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], ends[order]
    reach = np.maximum.accumulate(e)
    new = np.ones(s.size, dtype=bool)
    new[1:] = s[1:] > reach[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:], s.size) - 1
    return s[first], reach[last]


def area(iv: Intervals) -> int:
    return int((iv[1] - iv[0]).sum())


def union(*ivs: Intervals) -> Intervals:
    return merge(np.concatenate([iv[0] for iv in ivs] or [_EMPTY]),
                 np.concatenate([iv[1] for iv in ivs] or [_EMPTY]))


def iou(a: Intervals, b: Intervals) -> float | None:
    """Intersection over union of two interval masks; None when both are empty."""
    area_a, area_b = area(a), area(b)
    both = area(union(a, b))
    if both == 0:
        return None
    return (area_a + area_b - both) / both
