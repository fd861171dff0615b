"""Fetching Rich Call Data resources (logos, jCards) under the x5u rules.

An ``icn`` URL is chosen by whoever signed the call, exactly like an x5u, so it is
fetched with the same :class:`X5UFetcher` safety (HTTPS only unless allowed, public
addresses only, pinned connection, time limits, size cap), accepting image and JSON
bodies instead of certificates. Results, failures included, are kept in a bounded
TTL cache, so a brand's logo is fetched once per TTL, not once per call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from opensti.core.errors import BadIdentityInfo
from opensti.verification._cache import CacheInfo, TTLCache
from opensti.verification.fetch import FetchPolicy, TLSVerify, X5UFetcher

__all__ = ["ICON_MAX_BYTES", "ResourceFetcher", "fetch_once"]

#: Logos are small images; RFC 9795 leaves the bound to policy.
ICON_MAX_BYTES = 256 * 1024
_ACCEPTED_PREFIXES = ("image/",)
_ACCEPTED_TYPES = ("application/json", "application/octet-stream", "text/vcard")


class _IconFetcher(X5UFetcher):
    def _accepts(self, content_type: str) -> bool:
        return content_type.startswith(_ACCEPTED_PREFIXES) or content_type in _ACCEPTED_TYPES


@dataclass(frozen=True, slots=True)
class _Entry:
    content: bytes | None
    error: BadIdentityInfo | None


class ResourceFetcher:
    """Fetches rcd resources by URL; raises :class:`BadIdentityInfo` when it cannot."""

    def __init__(
        self,
        policy: FetchPolicy | None = None,
        *,
        verify: TLSVerify = True,
        cache_size: int = 512,
        ttl: float = 300.0,
        negative_ttl: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        policy = policy or FetchPolicy()
        self._fetcher = _IconFetcher(replace(policy, max_bytes=ICON_MAX_BYTES), verify=verify)
        self._cache: TTLCache[_Entry] = TTLCache(cache_size)
        self._ttl, self._negative_ttl, self._clock = ttl, negative_ttl, clock
        self._inflight: dict[str, asyncio.Future[_Entry]] = {}

    async def aclose(self) -> None:
        await self._fetcher.aclose()

    async def __aenter__(self) -> ResourceFetcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def cached(self, url: str) -> bytes | None:
        """The content if cached (raising the cached failure), else None."""
        entry = self._cache.get(url, self._clock())
        if entry is None:
            return None
        if entry.error is not None:
            raise entry.error
        return entry.content

    async def fetch(self, url: str) -> bytes:
        """The resource's bytes, from the cache or the network (one GET per URL at once)."""
        content = self.cached(url)
        if content is not None:
            return content
        pending = self._inflight.get(url)
        if pending is None:
            pending = asyncio.ensure_future(self._load(url))
            self._inflight[url] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(url, None))
        entry = await asyncio.shield(pending)
        if entry.error is not None:
            raise entry.error
        assert entry.content is not None
        return entry.content

    async def _load(self, url: str) -> _Entry:
        now = self._clock()
        try:
            content = await self._fetcher.fetch(url)
        except BadIdentityInfo as exc:
            # The fetcher speaks of x5u; here the URL is an rcd resource.
            message = exc.message.replace("x5u", "rcd resource")
            message = message.replace("is not a certificate", "is not an image or a jCard")
            error = BadIdentityInfo(message, value=url)
            entry = _Entry(None, error)
            self._cache.put(url, entry, now + self._negative_ttl)
            return entry
        entry = _Entry(content, None)
        self._cache.put(url, entry, now + self._ttl)
        return entry

    def cache_info(self) -> CacheInfo:
        return self._cache.info()

    def cache_clear(self) -> None:
        """Forget every logo (the next call fetches again)."""
        self._cache.clear()


async def fetch_once(url: str, policy: FetchPolicy) -> bytes:
    """One resource, fetched now under ``policy`` with a client of its own (no cache
    kept): for checks made once, such as a logo the operator sets on an entry."""
    async with ResourceFetcher(policy) as fetcher:
        return await fetcher.fetch(url)
