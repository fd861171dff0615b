"""TTLCache: expiry, LRU eviction, and the counters operators read."""

from __future__ import annotations

from opensti.verification import CacheInfo, TTLCache


def test_get_counts_hits_misses_and_expiry() -> None:
    cache: TTLCache[str] = TTLCache(2)
    cache.put("a", "A", expires=10.0)
    assert cache.get("a", 9.0) == "A"
    assert cache.get("b", 9.0) is None
    assert cache.get("a", 10.0) is None  # expired at its expiry time, and dropped
    assert cache.info() == CacheInfo(hits=1, misses=2, expired=1, evictions=0, size=0, maxsize=2)


def test_peek_counts_a_hit_and_leaves_a_miss_alone() -> None:
    cache: TTLCache[str] = TTLCache(2)
    cache.put("a", "A", expires=10.0)
    cache.put("b", "B", expires=10.0)
    assert cache.peek("a", 9.0) == "A"  # now the most recently used
    assert cache.peek("c", 9.0) is None
    assert cache.peek("b", 10.0) is None  # expired, but kept for get to count
    assert cache.info() == CacheInfo(hits=1, misses=0, expired=0, evictions=0, size=2, maxsize=2)
    cache.put("c", "C", expires=10.0)
    assert cache.keys() == ["a", "c"]  # b was the least recently used
    assert cache.get("b", 9.0) is None
    assert cache.info().evictions == 1
