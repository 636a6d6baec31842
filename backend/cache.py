"""LRU cache of image embeddings, bounded by memory and by entry count, keyed by content hash."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch


def nbytes(value: Any) -> int:
    """Memory held by the tensors inside a (nested) embedding structure."""
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    return 0


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    entries: int = 0
    bytes: int = 0
    max_bytes: int = 0
    max_entries: int = 0


@dataclass
class EmbeddingCache:
    """Thread-safe LRU; an entry larger than the whole bound is not kept."""

    max_bytes: int
    max_entries: int
    _items: OrderedDict[str, tuple[Any, int]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stats: CacheStats = field(default_factory=CacheStats)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def get(self, key: str) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self._stats.misses += 1
                return None
            self._items.move_to_end(key)
            self._stats.hits += 1
            return item[0]

    def put(self, key: str, value: Any) -> None:
        size = nbytes(value)
        with self._lock:
            if key in self._items:
                self._stats.bytes -= self._items.pop(key)[1]
            if size > self.max_bytes or self.max_entries == 0:
                return
            self._items[key] = (value, size)
            self._stats.bytes += size
            while self._stats.bytes > self.max_bytes or len(self._items) > self.max_entries:
                _, (_, evicted) = self._items.popitem(last=False)
                self._stats.bytes -= evicted
                self._stats.evictions += 1

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                hits=self._stats.hits,
                misses=self._stats.misses,
                evictions=self._stats.evictions,
                entries=len(self._items),
                bytes=self._stats.bytes,
                max_bytes=self.max_bytes,
                max_entries=self.max_entries,
            )
