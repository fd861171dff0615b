"""The STI-CR as a raw ASGI app: every verifier fetching our x5u lands here.

    GET|HEAD /sti-cr/{certificate_id}.pem   the chain, EE first (also at /{id}.pem when
                                            mounted under /sti-cr)

A hit answers from the in-memory :class:`PublishedChains` with no database query. The
snapshot is reloaded when a chain is published or withdrawn, by this process
(:meth:`RepositoryApp.refresh`) or by any other on the same database
(:attr:`RepositoryApp.watch`, run by :func:`opensti.store.follow_store`: NOTIFY on
PostgreSQL, polling on SQLite), and every ``refresh_interval`` seconds as a safety net.
``Cache-Control: public, max-age=N`` never outlives the certificate nor the configured
cap, so a verifier's cache cannot hold a chain past its expiry. ``ETag`` and
``Last-Modified`` allow conditional GETs (304). An id that was published but has just
expired answers 410; anything else unknown answers 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opensti.repository._chains import PublishedChain, PublishedChains
from opensti.store import Change, Database, StoreWatch, published_snapshot

__all__ = ["DEFAULT_MAX_AGE", "DEFAULT_REFRESH_SECONDS", "RepositoryApp", "create_repository_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: ATIS guidance: cache for at most a day (and never past the certificate's expiry).
DEFAULT_MAX_AGE = 86_400
DEFAULT_REFRESH_SECONDS = 30.0
CONTENT_TYPE = b"application/pem-certificate-chain"

_PATH = re.compile(r"(?:/sti-cr)?/([1-9][0-9]{0,17})\.pem")
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class RepositoryApp:
    """Serves :class:`PublishedChains`; :meth:`start` loads them and keeps them fresh."""

    def __init__(
        self,
        chains: PublishedChains,
        *,
        max_age_cap: int = DEFAULT_MAX_AGE,
        refresh_interval: float = DEFAULT_REFRESH_SECONDS,
        clock: Callable[[], dt.datetime] = _now,
    ) -> None:
        if max_age_cap < 0 or refresh_interval <= 0:
            raise ValueError("max_age_cap must be >= 0 and refresh_interval > 0")
        self.chains = chains
        self.max_age_cap = max_age_cap
        self.refresh_interval = refresh_interval
        self._clock = clock
        self._refresher: asyncio.Task[None] | None = None
        #: Confirms a change of the published ids before reloading; None without a store.
        self.watch: StoreWatch | None = None
        if chains.database is not None:
            snapshot = published_snapshot(clock)
            self.watch = StoreWatch(chains.database, Change.PUBLISHED, snapshot, self.reload)

    # -- life cycle ----------------------------------------------------------------------

    async def reload(self) -> int:
        """Load the snapshot now (the lifecycle calls this right after an activation)."""
        return await asyncio.to_thread(self.chains.reload)

    async def refresh(self) -> None:
        """Reload if the published ids changed (the reconcile loop's ``published`` hook):
        one small query, and no second reload when the notification of it arrives."""
        if self.watch is None:
            await self.reload()
        else:
            await self.watch.check()

    async def start(self) -> None:
        """Load once, then refresh every ``refresh_interval`` seconds until :meth:`stop`."""
        await self.reload()
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_forever())

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self.reload()
            except Exception:
                # A database hiccup must not stop publishing: keep serving the last snapshot.
                _log.exception("STI-CR: reloading the published chains failed")

    # -- requests ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        match = _PATH.fullmatch(_relative_path(scope))
        if match is None:
            await _respond(send, 404, b"not found\n", _TEXT)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed\n", [*_TEXT, (b"allow", b"GET, HEAD")])
            return
        chain = await self._lookup(int(match.group(1)))
        now = self._clock()
        if chain is None:
            await _respond(send, 404, b"no such certificate\n", _TEXT)
        elif now >= chain.not_after:
            await _respond(send, 410, b"certificate expired\n", _TEXT)
        else:
            await self._serve(scope, send, chain, now)

    async def _lookup(self, certificate_id: int) -> PublishedChain | None:
        chain = self.chains.get(certificate_id)
        if chain is None and self.chains.may_reload_for(certificate_id):
            await self.reload()
            chain = self.chains.get(certificate_id)
        return chain

    async def _serve(
        self, scope: Scope, send: Send, chain: PublishedChain, now: dt.datetime
    ) -> None:
        remaining = int((chain.not_after - now).total_seconds())
        headers = [
            (b"content-type", CONTENT_TYPE),
            (b"cache-control", f"public, max-age={min(self.max_age_cap, remaining)}".encode()),
            (b"etag", chain.etag.encode()),
            (b"last-modified", chain.last_modified.encode()),
        ]
        if _not_modified(_headers(scope), chain):
            await _respond(send, 304, b"", headers, length=False)
            return
        body = b"" if scope["method"] == "HEAD" else chain.body
        await _respond(send, 200, body, headers, length=len(chain.body))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _relative_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", ())}


def _not_modified(headers: dict[bytes, bytes], chain: PublishedChain) -> bool:
    """RFC 9110 13.2.2: If-None-Match (weak comparison) wins over If-Modified-Since."""
    if_none_match = headers.get(b"if-none-match")
    if if_none_match is not None:
        tags = {
            tag.strip().removeprefix("W/") for tag in if_none_match.decode("latin-1").split(",")
        }
        return "*" in tags or chain.etag in tags
    if_modified_since = headers.get(b"if-modified-since")
    if if_modified_since is None:
        return False
    try:
        since = email.utils.parsedate_to_datetime(if_modified_since.decode("latin-1"))
    except (TypeError, ValueError):
        return False
    if since.tzinfo is None:
        return False
    return chain.modified_at <= since


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    length: int | bool = True,
) -> None:
    if length is True:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    elif length is not False:
        headers = [*headers, (b"content-length", str(length).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_repository_app(
    database: Database,
    *,
    max_age_cap: int = DEFAULT_MAX_AGE,
    refresh_interval: float = DEFAULT_REFRESH_SECONDS,
    clock: Callable[[], dt.datetime] = _now,
) -> RepositoryApp:
    """The STI-CR over ``database``; serve it alone or mount it at ``/sti-cr``."""
    return RepositoryApp(
        PublishedChains(database, clock=clock),
        max_age_cap=max_age_cap,
        refresh_interval=refresh_interval,
        clock=clock,
    )
