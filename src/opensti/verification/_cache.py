"""A bounded LRU of values with expiry times, counted so operators can see it work."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["CacheInfo", "TTLCache"]

_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class CacheInfo:
    hits: int
    misses: int
    expired: int
    evictions: int
    size: int
    maxsize: int


class TTLCache(Generic[_V]):
    """LRU with a per-entry expiry (epoch seconds); the caller passes ``now`` in.

    Not thread-safe by itself: the verification service uses it from one event loop.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._data: OrderedDict[str, tuple[float, _V]] = OrderedDict()
        self._hits = self._misses = self._expired = self._evictions = 0

    def get(self, key: str, now: float) -> _V | None:
        item = self._data.get(key)
        if item is None:
            self._misses += 1
            return None
        expires, value = item
        if now >= expires:
            del self._data[key]
            self._expired += 1
            self._misses += 1
            return None
        self._data.move_to_end(key)
        self._hits += 1
        return value

    def peek(self, key: str, now: float) -> _V | None:
        """:meth:`get` when it would hit; a miss counts nothing and changes nothing."""
        item = self._data.get(key)
        if item is None or now >= item[0]:
            return None
        self._data.move_to_end(key)
        self._hits += 1
        return item[1]

    def put(self, key: str, value: _V, expires: float) -> None:
        self._data[key] = (expires, value)
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)
            self._evictions += 1

    def update(self, key: str, value: _V) -> None:
        """Replace a present entry's value, keeping its expiry."""
        item = self._data.get(key)
        if item is not None:
            self._data[key] = (item[0], value)

    def pop(self, key: str) -> None:
        self._data.pop(key, None)

    def keys(self) -> list[str]:
        return list(self._data)

    def info(self) -> CacheInfo:
        return CacheInfo(
            hits=self._hits,
            misses=self._misses,
            expired=self._expired,
            evictions=self._evictions,
            size=len(self._data),
            maxsize=self.maxsize,
        )

    def clear(self) -> None:
        self._data.clear()
        self._hits = self._misses = self._expired = self._evictions = 0
