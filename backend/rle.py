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

import contextlib
import functools
import operator

import numpy as np

_HEADER_WIDTHS = (3, 4, 8, 16)
_HEADER_CODE = ((8 - 1) << 16) | sum((w - 1) << (12 - 4 * i) for i, w in enumerate(_HEADER_WIDTHS))
_CHUNK = 2**16
# per length class (0 single value, 1 run <= 8, 2 <= 16, 3 <= 256, 4 longer: 16-bit field):
# flag bit + 2-bit field index, shifted above the field and the 8-bit value; a single value
# is a literal block 0 00 + count 000
_FIELD_BITS = np.array([3, 3, 4, 8, 16], dtype=np.uint32)
_PREFIX = np.array([0b000, 0b100, 0b101, 0b110, 0b111], dtype=np.uint32)
_HEAD = _PREFIX << (_FIELD_BITS + np.uint32(8))
_WIDTH = (_FIELD_BITS + np.uint32(11)).astype(np.int32)
_CLASS = np.searchsorted(np.array([1, 8, 16, 256]), np.arange(258)).astype(np.intp)


def _runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths (uint32) and values of a 1-D array."""
    change = np.flatnonzero(flat[1:] != flat[:-1])  # the last index of every run but the last
    k = change.size
    lengths = np.empty(k + 1, dtype=np.uint32)
    values = np.empty(k + 1, dtype=flat.dtype)
    if k:
        lengths[0] = change[0] + 1
        np.subtract(change[1:], change[:-1], out=lengths[1:k], casting="unsafe")
        lengths[k] = flat.size - 1 - change[-1]
        np.take(flat, change, out=values[:k])
    else:
        lengths[0] = flat.size
    values[k] = flat[-1]
    return lengths, values


def _split_long_runs(lengths: np.ndarray, values: np.ndarray):
    """Runs longer than 2**16 as (L - 1) // 2**16 full chunks and the remainder.

    Returns lengths, values and which pieces keep the 16-bit field: every piece of a run
    longer than 256 does, even a short remainder.
    """
    lengths = lengths.astype(np.int64)
    full = np.maximum(lengths - 1, 0) // _CHUNK
    pieces = full + 1
    huge = np.repeat(lengths > 256, pieces)
    values = np.repeat(values, pieces)
    first = np.cumsum(pieces) - pieces  # index of each run's first piece
    split = np.full(int(pieces.sum()), _CHUNK, dtype=np.int64)
    split[first + full] = lengths - full * _CHUNK
    return split.astype(np.uint32), values, huge


def _tokens(lengths: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token codes (uint32) and their bit widths (int32), in stream order."""
    huge = None
    if lengths.max() > _CHUNK:
        lengths, values, huge = _split_long_runs(lengths, values)
    cls = _CLASS[np.minimum(lengths, 257, dtype=np.intp)]  # intp: no index conversion
    if huge is not None:
        cls[huge] = 4
    n = lengths - np.uint32(1)
    n <<= np.uint32(8)
    n |= values
    n |= _HEAD[cls]
    return n, _WIDTH[cls]


def _pack(header: int, codes: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """The 53-bit header, then variable-width codes (each at most 27 bits), as 32-bit words.

    Each code is shifted into a 64-bit frame whose high half is its part of the 32-bit output
    word it starts in and whose low half is what spills into the next word. Codes never
    overlap, so summing the frames of the codes starting in each word adds no carries: high
    halves are the words, low halves their spills. Codes are at least 14 bits
    wide, so every word from the second on has a code starting in it.
    """
    # bit positions fit in int32 below 2**31 bits (a 256 MB RLE)
    ends = np.cumsum(widths, dtype=np.int32 if widths.size < 2**31 // 32 else np.int64)
    ends += 53
    word = ends - widths
    word >>= 5
    shift = word << 5  # 64 - (start & 31) - width = 64 - (end - 32 * word)
    shift -= ends
    shift += 64
    frames = codes.astype(np.uint64)
    frames <<= shift.astype(np.uint64)
    # the frames of each word summed: differences of a running sum at each word's last code
    # (uint64 wraps around; the differences stay exact)
    running = np.cumsum(frames)
    last = np.flatnonzero(word[1:] != word[:-1])
    sums = np.empty(last.size + 1, dtype=np.uint64)
    sums[0] = 0
    sums[1:] = running[last]
    sums = np.diff(sums, append=running[-1])
    words = np.zeros(sums.size + 2, dtype=np.uint64)
    words[1:-1] = sums >> np.uint64(32)
    words[2:] += sums & np.uint64(0xFFFFFFFF)
    words[0] = header >> 21
    words[1] |= (header & (2**21 - 1)) << 11
    return words


def encode_rle(arr: np.ndarray) -> list[int]:
    """Encode a 1-D array of values 0..255 exactly like upstream ``encode_rle`` (word size 8)."""
    flat = np.asarray(arr).ravel()
    if flat.size == 0:
        raise ValueError("cannot RLE-encode an empty array")
    if flat.size >= 2**32:
        raise ValueError(f"array of {flat.size} values is too long for a 32-bit RLE count")
    if flat.dtype != np.uint8:
        if flat.min() < 0 or flat.max() > 255:
            raise ValueError("RLE values must lie in 0..255 (word size 8)")
        flat = flat.astype(np.uint8)
    return _encode_runs(*_runs(flat), total=flat.size)


def _encode_runs(lengths: np.ndarray, values: np.ndarray, total: int) -> list[int]:
    codes, widths = _tokens(lengths, values)
    bits = 53 + int(widths.sum(dtype=np.int64))
    n_bytes = (bits + 8 - bits % 8) // 8  # upstream always pads, a whole byte when aligned
    words = _pack((total << 21) | _HEADER_CODE, codes, widths)
    return [*words.astype(">u4").view(np.uint8)[:n_bytes].tobytes()]


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
    if flat.dtype != np.uint8:
        if flat.min() < 0 or flat.max() > 255:
            raise ValueError("mask values must lie in 0..255")
        flat = flat.astype(np.uint8)
    if flat.size * 4 >= 2**32:
        raise ValueError(f"mask of {flat.size} pixels is too large for a 32-bit RLE count")
    lengths, values = _runs(flat)  # runs over pixels; repeating each pixel 4x scales them
    lengths <<= np.uint32(2)
    return _encode_runs(lengths, values, total=flat.size * 4)



# ------------------------------------------------------------------------------------- decoding
#
# A token's length is known from its first bits: 3 + field + one word for a run, 3 + field +
# (n + 1) words for a literal block. ``_length_table`` holds that length for a token starting at
# each bit of every 16-bit value, so one table lookup per byte pair gives the length of a token
# starting at every bit of the stream (vectorized). Tokens whose length needs more than those 16
# bits (a literal block with a 4-, 8- or 16-bit count: never written by upstream ``encode_rle``,
# rare from the browser) are marked and measured one by one. The chain of token starts
# ``p -> p + length(p)`` is then followed by CPython's C iterators (``map`` over the list being
# extended), and every field is read with vectorized 64-bit windows.

_HEADER_BITS = 53


@functools.lru_cache(maxsize=8)
def _next_table(word_size: int, sizes: tuple[int, ...], mark: int) -> np.ndarray:
    """(65536, 8): for a token starting at bit r of a 16-bit value, r + its length, or ``mark``.

    Adding 8 x the byte's index gives where the next token starts. ``mark`` (far past any
    stream end) flags a literal block whose count does not lie in the 16 bits.
    """
    pair = np.arange(65536, dtype=np.int64)[:, None]
    r = np.arange(8, dtype=np.int64)[None, :]
    prefix = (pair >> (13 - r)) & 7
    size = np.array(sizes, dtype=np.int64)[prefix & 3]
    run = 3 + size + word_size
    # a literal block with field 0 (upstream's single values): its count lies in the pair
    fits = r + 3 + sizes[0] <= 16
    count = (pair >> np.maximum(16 - (r + 3 + sizes[0]), 0)) & ((1 << sizes[0]) - 1)
    literal = 3 + sizes[0] + (count + 1) * word_size
    table = np.where(prefix >= 4, r + run, np.where((prefix == 0) & fits, r + literal, mark))
    return table.astype(np.int32 if mark < 2**31 else np.int64)


_LONG = 255  # in the byte table: a token whose length the 16 bits do not give (or > 254)


@functools.lru_cache(maxsize=8)
def _length_bytes(word_size: int, sizes: tuple[int, ...]) -> np.ndarray:
    """(65536,) uint64: its 8 bytes are the token lengths at bits 0..7 of a 16-bit value.

    One gather of this table per byte pair gives the length of a token starting at every bit
    (viewed as uint8); ``_LONG`` marks the tokens the general path must measure.
    """
    table = _next_table(word_size, sizes, 2**30).astype(np.int64) - np.arange(8)[None, :]
    table = np.where(table >= _LONG, _LONG, table).astype(np.uint8)
    return np.ascontiguousarray(table).view(np.uint64).ravel()


def _as_bytes(rle) -> np.ndarray:
    """The RLE as a uint8 array (from a list of ints, bytes or an array of 0..255)."""
    if isinstance(rle, np.ndarray):
        if rle.ndim != 1:
            raise ValueError(f"RLE must be a flat list of byte values, got shape {rle.shape}")
        if rle.dtype != np.uint8 and rle.size and (rle.min() < 0 or rle.max() > 255):
            raise ValueError("RLE values must be bytes (0..255)")
        return rle.astype(np.uint8, copy=False)
    try:
        return np.frombuffer(bytes(rle), dtype=np.uint8)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"RLE must be a list of byte values 0..255: {exc}") from None


def _windows(padded: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The 64 bits of the stream starting at each bit position (uint64)."""
    byte = pos >> 3
    rows = np.lib.stride_tricks.sliding_window_view(padded, 8)[byte]
    return rows.view(">u8").ravel().astype(np.uint64) << (pos & 7).astype(np.uint64)


def _token_length(data: bytes, pos: int, word_size: int, sizes: tuple[int, ...]) -> int:
    """Length in bits of the token at ``pos`` (the general rule, one token)."""
    chunk = int.from_bytes(data[pos >> 3 : (pos >> 3) + 4].ljust(4, b"\0"), "big")
    head = (chunk >> (32 - (pos & 7) - 3)) & 7
    size = sizes[head & 3]
    if head >= 4:
        return 3 + size + word_size
    count = (chunk >> (32 - (pos & 7) - 3 - size)) & ((1 << size) - 1)
    return 3 + size + (count + 1) * word_size


def _pairs(data: np.ndarray) -> np.ndarray:
    """Each byte with the next one (the last with zero) as 16-bit values."""
    pair = np.empty(data.size, dtype=np.uint16)
    pair[:] = data
    pair <<= 8
    pair[:-1] |= data[1:]
    return pair


_BLOCK_BITS = 4096  # parallel walk: one walker per block of this many bits
_PROBE_OFFSETS = 27  # entry candidates per block: the longest run token (3 + 16 + 8 bits)
_PROBE_TOKENS = 8  # tokens each candidate is followed for its score
_MAX_ROUNDS = 32  # re-walk rounds before the sequential walk takes over
_PARALLEL_MIN_BITS = 1 << 18  # smaller streams: the sequential walk is quicker


def _token_starts(data: np.ndarray, word_size: int, sizes: tuple[int, ...]) -> np.ndarray:
    """Bit positions of the tokens, from the end of the header to the end of the stream.

    Token lengths come as bytes (one uint64 table gather per byte pair; ``_LONG`` where the
    16 bits do not give it). Large streams of byte values are walked in parallel
    (:func:`_walk_blocks`), others sequentially (:func:`_walk_chain`); a stream with a token
    the table cannot measure (a long literal block) takes :func:`_token_starts_exact`.
    """
    bits = data.size * 8
    pairs = _pairs(data)
    padded = np.zeros(data.size + 16, dtype=np.uint64)  # zero lengths past the end
    np.take(_length_bytes(word_size, sizes), pairs, out=padded[: data.size])
    lengths = padded.view(np.uint8)
    starts = None
    if bits >= _PARALLEL_MIN_BITS and word_size == 8:
        starts = _walk_blocks(lengths, pairs, bits)
    if starts is None:
        starts = _walk_chain(lengths[:bits])
    if (lengths[starts] == _LONG).any():
        return _token_starts_exact(data, word_size, sizes)
    return starts


def _walk_chain(lengths: np.ndarray) -> np.ndarray:
    """The chain ``p -> p + lengths[p]`` from the header's end: two ``map``s over the list
    being extended, until a start lies past the end (IndexError)."""
    step = memoryview(lengths)
    chain = [_HEADER_BITS]
    with contextlib.suppress(IndexError):
        chain.extend(map(operator.add, iter(chain), map(step.__getitem__, iter(chain))))
    return np.fromiter(chain, dtype=np.int64, count=len(chain) - 1)


def _walk(lengths: np.ndarray, entry: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Every position of walkers from ``entry`` until each passes its ``stop``
    (rows: steps; a walker past its stop stays put)."""
    pos = entry.copy()
    rows = [pos]
    active = pos < stop
    limit = lengths.size - 1
    while active.any():
        pos = np.where(active, pos + lengths[np.minimum(pos, limit)], pos)
        rows.append(pos)
        active = pos < stop
    return np.stack(rows)


def _walk_blocks(lengths: np.ndarray, pairs: np.ndarray, bits: int) -> np.ndarray | None:
    """Token starts found by one walker per block, all blocks at once; None to give up.

    A token's length depends on the tokens before it, so where the chain enters a block is
    known only once the previous block is walked. Each block's entry is guessed instead:
    of the first 27 bit positions, the one whose next 8 tokens hold the most byte values 0 or
    255 (brush masks hold nothing else). Then every block is walked from its guess at once,
    and a guess is right exactly when it equals where the previous block's walker left (block
    0 starts right after the header): wrong blocks are walked again from there until all
    agree. The result is exact for any stream; the guesses only decide how fast.
    """
    bounds = np.arange(_HEADER_BITS, bits, _BLOCK_BITS, dtype=np.int64)
    stops = np.append(bounds[1:], bits)
    limit = lengths.size - 1
    # score the candidate entries
    probe = (bounds[:, None] + np.arange(_PROBE_OFFSETS)[None, :]).ravel()
    score = np.zeros(probe.size, dtype=np.int16)
    last_pair = pairs.size - 1
    for _ in range(_PROBE_TOKENS):
        probe = np.minimum(probe + lengths[probe], limit)
        value_at = probe - 8
        value = (pairs[np.minimum(value_at >> 3, last_pair)] >> (8 - (value_at & 7))) & 255
        score += (value == 0) | (value == 255)
    entry = bounds + np.argmax(score.reshape(bounds.size, _PROBE_OFFSETS), axis=1)
    entry[0] = _HEADER_BITS
    paths = _walk(lengths, entry, stops)
    for _ in range(_MAX_ROUNDS):
        exits = paths[-1]
        wrong = np.flatnonzero(entry[1:] != exits[:-1]) + 1
        if not wrong.size:
            by_block = paths.T
            keep = (by_block >= entry[:, None]) & (by_block < stops[:, None])
            return by_block[keep]
        if wrong.size > bounds.size // 2:  # not byte values 0/255: guesses do not help
            return None
        entry[wrong] = exits[wrong - 1]
        again = _walk(lengths, entry[wrong], stops[wrong])
        if again.shape[0] != paths.shape[0]:  # pad the shorter: final rows repeat
            rows = max(again.shape[0], paths.shape[0])
            paths = np.concatenate([paths, np.repeat(paths[-1:], rows - paths.shape[0], 0)])
            again = np.concatenate([again, np.repeat(again[-1:], rows - again.shape[0], 0)])
        paths[:, wrong] = again
    return None


def _token_starts_exact(data: np.ndarray, word_size: int, sizes: tuple[int, ...]
                        ) -> np.ndarray:
    """Bit positions of the tokens; long literal blocks are measured one by one."""
    bits = data.size * 8
    mark = 2**30 if bits < 2**29 else 2**62
    following = _next_table(word_size, sizes, mark)[_pairs(data)]  # (bytes, 8): r + length
    following += (np.arange(data.size, dtype=following.dtype) * 8)[:, None]
    # following[p] is where the token after a token starting at bit p starts
    step = memoryview(following.ravel()).cast("B").cast("i" if mark < 2**31 else "q")
    raw = data.tobytes()
    chain = [_HEADER_BITS]
    follow = iter(chain)
    while True:
        # `follow` walks the list that `extend` is growing: each start yields the next one,
        # until a start lies past the end of the stream (IndexError)
        with contextlib.suppress(IndexError):
            chain.extend(map(step.__getitem__, follow))
        if chain[-1] < mark:
            break
        here = chain[-2]
        chain[-1] = here + _token_length(raw, here, word_size, sizes)
        follow = iter(chain)
        follow.__setstate__(len(chain) - 1)
    return np.fromiter(chain, dtype=np.int64, count=len(chain) - 1)


@functools.lru_cache(maxsize=8)
def _field_shifts(sizes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per 3-bit prefix: the right shift that leaves a token's count field (after dropping
    the prefix), and the left shift that puts its first value at the top of the window."""
    size = np.array(sizes, dtype=np.uint64)[np.arange(8) & 3]
    return np.uint64(64) - size, size + np.uint64(3)


def _header(data: np.ndarray) -> tuple[int, int, tuple[int, ...]]:
    """(value count, word size, the four count field widths) of an RLE's 53-bit header."""
    if data.size < 7:
        raise ValueError(f"RLE of {data.size} bytes is shorter than its 53-bit header")
    head = int.from_bytes(data[:7].tobytes(), "big") >> 3
    return head >> 21, ((head >> 16) & 31) + 1, tuple(((head >> (12 - 4 * i)) & 15) + 1
                                                       for i in range(4))


def rle_length(rle) -> int:
    """The number of values an RLE's header announces (``height * width * 4`` for a mask)."""
    return _header(_as_bytes(rle))[0]


def _decode_runs(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values uint8, counts) of the runs of an RLE, cut at the header's value count."""
    num, word_size, sizes = _header(data)
    if num == 0:
        return np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int64)
    starts = _token_starts(data, word_size, sizes)
    padded = np.zeros(data.size + 16, dtype=np.uint8)
    padded[: data.size] = data
    window = _windows(padded, starts)
    prefix = window >> np.uint64(61)  # flag bit and field index
    shifts = _field_shifts(sizes)
    counts = (window << np.uint64(3)) >> shifts[0][prefix]  # the count field, minus one
    literal = prefix < 4
    if word_size <= 32 and not counts[literal].any():
        # runs and single values: each value sits in its token's window after the count
        value_first = (window << shifts[1][prefix]) >> np.uint64(64 - word_size)
        counts = counts.astype(np.int64)
        counts += 1
        value_at = None
    else:  # a literal block of n values: n runs of one value each
        counts = counts.astype(np.int64) + 1
        value_first = None
        value_at = starts + 3 + np.array(sizes, dtype=np.int64)[prefix & 3]
        long_literal = literal & (counts > 1)
        pieces = np.where(long_literal, counts, 1)
        owner = np.repeat(np.arange(starts.size), pieces)
        first = np.cumsum(pieces) - pieces
        offset = np.arange(owner.size) - first[owner]
        value_at = value_at[owner] + offset * word_size
        literal = literal[owner]
        counts = np.where(literal, 1, counts[owner])
    ends = np.cumsum(counts)
    last = int(np.searchsorted(ends, num))  # the token that completes the `num` values
    if value_at is None and last < ends.size:
        prefix_last = int(prefix[last])
        value_end = int(starts[last]) + int(shifts[1][prefix_last]) + word_size
    else:
        value_end = int(value_at[last]) + word_size if last < ends.size else 0
    if last == ends.size or value_end > data.size * 8:
        done = int(ends[last - 1]) if last else 0
        raise ValueError(f"RLE ends after {min(done, num)} of the {num} values its header "
                         "announces: the stream is truncated or corrupt")
    if literal[last] and ends[last] > num:
        raise ValueError(f"RLE literal block runs past the {num} values its header announces")
    if value_first is None:
        values = _windows(padded, value_at[: last + 1]) >> np.uint64(64 - word_size)
    else:  # every value sits in its token's window, after the flag, index and count
        values = value_first[: last + 1]
    if word_size > 8 and values.max() > 255:
        raise ValueError(f"RLE value {int(values.max())} does not fit in a byte")
    counts = counts[: last + 1]
    counts[-1] -= int(ends[last]) - num
    return values.astype(np.uint8), counts


def decode_rle(rle) -> np.ndarray:
    """Decode a Label Studio brush RLE exactly like upstream ``decode_rle``: flat uint8 values.

    A brush mask decodes to ``height * width * 4`` values (RGBA); see :func:`rle_to_mask`.
    Raises ``ValueError`` for a stream that is truncated or holds a value above 255.
    """
    return np.repeat(*_decode_runs(_as_bytes(rle)))


def rle_to_mask(rle, height: int, width: int, channel: int = 0) -> np.ndarray:
    """The ``height`` x ``width`` uint8 mask of a brush RLE (one RGBA channel, the first).

    Raises ``ValueError`` when the RLE does not hold ``height * width * 4`` values, the sign
    of ``original_height`` / ``original_width`` that do not belong to the mask. When every run
    covers whole pixels (every encoder of brush masks writes them so: RGBA values repeated),
    the pixels are expanded directly, a quarter of the work.
    """
    data = _as_bytes(rle)
    num = _header(data)[0]
    if num != height * width * 4:
        raise ValueError(
            f"RLE holds {num} values, but height x width x 4 = {height} x {width} x 4 = "
            f"{height * width * 4}: the RLE does not belong to an image of that size")
    values, counts = _decode_runs(data)
    if not (counts & 3).any():  # whole pixels: all four channels alike
        return np.repeat(values, counts >> 2).reshape(height, width)
    return np.ascontiguousarray(np.repeat(values, counts).reshape(height, width, 4)[:, :, channel])
