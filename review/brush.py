"""Brush masks as pixel intervals, and their IoU, straight from Label Studio's RLE.

A Label Studio brush RLE is a bit stream over the RGBA bytes of the mask (header: 32-bit value
count, word size - 1 in 5 bits, four run-length field widths - 1 in 4 bits each; then tokens:
flag bit, 2-bit field index, run length - 1 in that field's width, then one value for a run or
``length`` values for a literal block). Decoding it to an H*W*4 array costs megabytes per mask;
agreement needs only which pixels are set, so here the stream is walked token by token (one
table look-up per token on a precomputed 3-bit head per bit position), the fields are read with
vectorized gathers over a whole batch of masks at once, and a mask stays a sorted list of
half-open pixel intervals ``[s, e)``. IoU of interval lists is a merge of their union: no
per-pixel array is ever built.

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


_PAD = bytes(8)  # zero bytes after each stream: windows never read the next mask


def _read(bits: np.ndarray, start: int, width: int) -> int:
    value = 0
    for b in bits[start:start + width].tolist():
        value = (value << 1) | b
    return value


def _windows(words: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The 32 bits starting at each bit position ``at`` (uint64, in the low 32 bits), from the
    stream as big-endian 64-bit words: two word gathers and shifts per position."""
    i = at >> 6
    r = (at & 63).astype(np.uint64)
    hi = words[i] << r
    lo = (words[i + 1] >> np.uint64(1)) >> (np.uint64(63) - r)  # no shift by 64
    return ((hi | lo) >> np.uint64(32)) & np.uint64(0xFFFFFFFF)


def _header(data: bytes) -> tuple[int, int, list[int]]:
    """(value count, word size, run-length field widths) of the 53-bit header."""
    if len(data) < 7:
        raise RLEError(f"brush RLE of {len(data)} bytes is shorter than its 53-bit header")
    header = int.from_bytes(data[:7], "big")  # 56 bits: the header and 3 more
    return (header >> 24, (header >> 19 & 0x1F) + 1,
            [(header >> (15 - 4 * i) & 0xF) + 1 for i in range(4)])


Runs = tuple[int, np.ndarray, np.ndarray]  # (value count, run ends, run values)


def runs_many(rles: Sequence[Sequence[int] | bytes]) -> list[Runs | RLEError]:
    """The runs of many brush RLEs at once (numpy work shared by the whole batch): per RLE
    (value count, run ends, run values) in stream order, or the RLEError that stops it.

    Run ``i`` covers bytes ``[ends[i-1], ends[i])`` of the flat RGBA array."""
    out: list[Runs | RLEError | None] = [None] * len(rles)
    good, heads_, blobs, bit_offsets, offset = [], [], [], [], 0
    for i, rle in enumerate(rles):
        data = bytes(rle)
        try:
            heads_.append(_header(data))
        except RLEError as e:
            out[i] = e
            continue
        good.append(i)
        blobs.append(data + _PAD)
        bit_offsets.append(offset)
        offset += 8 * len(blobs[-1])
    if not good:
        return out  # type: ignore[return-value]
    stream = b"".join(blobs) + _PAD
    stream += bytes(-len(stream) % 8 + 8)
    padded = np.frombuffer(stream, dtype=np.uint8)
    words64 = padded.view(">u8").astype(np.uint64)
    bits = np.unpackbits(padded)
    # head[p] = flag bit and field index of a token starting at bit p
    head = (bits[:-2] << 2 | bits[1:-1] << 1 | bits[2:]).tobytes()
    starts: list[int] = []
    push = starts.append
    counts = []
    for (_, word, sizes), base, blob in zip(heads_, bit_offsets, blobs, strict=True):
        run_len = [-1] * 4 + [3 + s + word for s in sizes]  # runs: fixed token length
        n0, p = len(starts), base + 53
        # no token fits in the last (shortest token - 1) bits: they are the padding
        limit = base + 8 * (len(blob) - len(_PAD)) - (3 + min(sizes) + word) + 1
        # walk token starts; a literal block's length depends on its count field (rare)
        while p < limit:
            h = head[p]
            step = run_len[h]
            if step < 0:
                s = sizes[h & 3]
                step = 3 + s + word * (_read(bits, p + 3, s) + 1)
            push(p)
            p += step
        counts.append(len(starts) - n0)
    n_masks = len(good)
    if not starts:
        for i in good:
            out[i] = RLEError("brush RLE holds no run")
        return out  # type: ignore[return-value]
    nums = np.array([h[0] for h in heads_], dtype=np.int64)
    words = np.array([h[1] for h in heads_], dtype=np.uint64)
    sizes_tab = np.array([h[2] for h in heads_], dtype=np.uint64)
    ends_bit = np.array(bit_offsets, dtype=np.int64) + 8 * np.array(
        [len(b) - len(_PAD) for b in blobs], dtype=np.int64)
    ps = np.asarray(starts, dtype=np.int64)
    mask_of = np.repeat(np.arange(n_masks), counts)
    win = _windows(words64, ps)
    is_run = (win >> np.uint64(31)) == 1
    field = ((win >> np.uint64(29)) & np.uint64(3)).astype(np.intp)
    uniform = all(h[1:] == heads_[0][1:] for h in heads_)
    if uniform:  # the usual case: every mask has Label Studio's header (word 8; 3, 4, 8, 16)
        word0, sizes0 = heads_[0][1], heads_[0][2]
        size = np.asarray(sizes0, dtype=np.uint64)[field]
    else:
        size = sizes_tab[mask_of, field]
    count = ((win >> (np.uint64(29) - size)) & ((np.uint64(1) << size) - np.uint64(1))
             ).astype(np.int64) + 1
    if uniform and 3 + max(sizes0) + word0 <= 32 and is_run.all():
        # one run per token, its value in the same 32-bit window
        values = ((win >> (np.uint64(29 - word0) - size))
                  & np.uint64((1 << word0) - 1)).astype(np.int64)
        lengths, run_mask = count, mask_of
    else:  # literal blocks: `count` runs of length 1 each; values read one by one
        pieces = np.where(is_run, 1, count)
        token = np.repeat(np.arange(ps.size), pieces)
        k = np.arange(token.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        run_mask = mask_of[token]
        word = words[run_mask]
        value_at = np.minimum(ps[token] + 3 + size[token].astype(np.int64)
                              + word.astype(np.int64) * k, ends_bit[run_mask])
        values = ((_windows(words64, value_at) >> (np.uint64(32) - word))
                  & ((np.uint64(1) << word) - np.uint64(1))).astype(np.int64)
        lengths = np.where(is_run[token], count[token], 1)
    total = np.cumsum(lengths)
    first = np.searchsorted(run_mask, np.arange(n_masks))
    before = (total - lengths)[np.minimum(first, total.size - 1)]
    ends = total - before[run_mask]
    # trailing padding may parse as extra tokens: keep runs that start inside the mask
    keep = (ends - lengths) < nums[run_mask]
    covered = np.zeros(n_masks, dtype=np.int64)
    np.maximum.at(covered, run_mask, ends)
    split = np.cumsum(np.bincount(run_mask[keep], minlength=n_masks))[:-1]
    per_ends = np.split(np.minimum(ends, nums[run_mask])[keep], split)
    per_values = np.split(values[keep], split)
    for j, i in enumerate(good):
        num = int(nums[j])
        if covered[j] < num:
            out[i] = RLEError(f"brush RLE truncated: its runs cover {int(covered[j])} of "
                              f"{num} values")
        else:
            out[i] = (num, per_ends[j], per_values[j])
    return out  # type: ignore[return-value]


def rle_runs(rle: Sequence[int] | bytes) -> Runs:
    """The runs of one brush RLE: (value count, run ends, run values); see runs_many."""
    (got,) = runs_many([rle])
    if isinstance(got, RLEError):
        raise got
    return got


def intervals_many(items: Sequence[tuple[Sequence[int] | bytes, int, int]]
                   ) -> list[Intervals | RLEError]:
    """Set pixels of many (rle, width, height) brush masks, or the RLEError of each bad one."""
    out: list[Intervals | RLEError] = []
    for (_, width, height), got in zip(items, runs_many([i[0] for i in items]), strict=True):
        if isinstance(got, RLEError):
            out.append(got)
            continue
        num, ends, values = got
        if num != width * height * 4:
            out.append(RLEError(f"brush RLE holds {num} values, its image {width}x{height} "
                                f"needs {width * height * 4} (RGBA)"))
            continue
        on = values > 0
        starts = (ends - np.diff(ends, prepend=0))[on]
        # byte 4k+3 (alpha) of pixel k lies in [s, e)  <=>  s//4 <= k < e//4
        lo, hi = starts // 4, ends[on] // 4
        keep = hi > lo
        out.append((lo[keep], hi[keep]))  # runs are ordered and disjoint: so are these
    return out


def rle_intervals(rle: Sequence[int] | bytes, width: int, height: int) -> Intervals:
    """Set pixels of one brush RLE as sorted, disjoint pixel intervals (row-major index)."""
    (got,) = intervals_many([(rle, width, height)])
    if isinstance(got, RLEError):
        raise got
    return got


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
    if len(ivs) == 1:
        return ivs[0]
    return merge(np.concatenate([iv[0] for iv in ivs] or [_EMPTY]),
                 np.concatenate([iv[1] for iv in ivs] or [_EMPTY]))


def iou(a: Intervals, b: Intervals) -> float | None:
    """Intersection over union of two interval masks; None when both are empty."""
    area_a, area_b = area(a), area(b)
    both = area(union(a, b))
    if both == 0:
        return None
    return (area_a + area_b - both) / both
