"""The embedding cache: LRU, bounded by bytes and by entries."""

from __future__ import annotations

import torch

from backend.cache import EmbeddingCache, nbytes

MIB = 2**20


def _entry(mib: int) -> dict:
    """Shaped like a cached SAM2 embedding: a tensor plus a list of tensors."""
    half = mib * MIB // 8  # float32 elements in half the size
    return {"features": {"image_embed": torch.zeros(half),
                         "high_res_feats": [torch.zeros(half // 2), torch.zeros(half // 2)]},
            "hw": (192, 256)}


def test_nbytes_counts_nested_tensors() -> None:
    assert nbytes(_entry(3)) == 3 * MIB


def test_evicts_least_recently_used_by_bytes() -> None:
    cache = EmbeddingCache(max_bytes=5 * MIB, max_entries=100)
    for key in "abc":
        cache.put(key, _entry(2))  # 6 MiB > 5: "a" goes
    assert cache.get("a") is None
    assert cache.get("b") is not None  # b is now most recent
    cache.put("d", _entry(2))  # evicts c, the least recently used
    assert cache.get("c") is None and cache.get("b") is not None
    stats = cache.stats()
    assert stats.bytes == 4 * MIB and stats.entries == 2 and stats.evictions == 2


def test_bounded_by_entries_and_oversized_entries_are_not_kept() -> None:
    cache = EmbeddingCache(max_bytes=100 * MIB, max_entries=2)
    for key in "abc":
        cache.put(key, _entry(1))
    assert [cache.get(k) is not None for k in "abc"] == [False, True, True]
    cache.put("huge", _entry(101))
    assert cache.get("huge") is None and cache.stats().entries == 2


def test_replacing_a_key_does_not_double_count() -> None:
    cache = EmbeddingCache(max_bytes=10 * MIB, max_entries=10)
    cache.put("a", _entry(2))
    cache.put("a", _entry(3))
    assert cache.stats().bytes == 3 * MIB and cache.stats().entries == 1


def test_zero_bound_disables_the_cache() -> None:
    cache = EmbeddingCache(max_bytes=0, max_entries=10)
    cache.put("a", _entry(1))
    assert cache.get("a") is None
