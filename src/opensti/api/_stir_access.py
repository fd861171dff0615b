"""Who may use the STIR API (``/stir/v1/...``) and ``/metrics``: closed by default.

A request is let in by any one of:

* a bearer token of the ``signer`` role (or ``admin``; any live token for ``/metrics``),
* a TLS client certificate that chained to the configured client CA (mutual TLS;
  the listener refuses a certificate from another CA during the handshake),
* a source address inside one of the configured networks.

Tokens are checked against an in-memory map of SHA-256 digests, refreshed from the
store in a worker thread every few seconds (and at once, at most every second, for a
token not seen yet, so a new token works without a restart): the hot path makes no
database round trip and no write. The periodic refresh runs behind the requests, which
go on with the tokens known meanwhile: a slow or locked store never holds up signing
(a revoked token stops working once that refresh lands). When a token was used,
``last_used_at`` is written with the next refresh, once per token and period.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opensti.api._stir_messages import Headers, STIRRequest
from opensti.core.errors import (
    InvalidInput,
    NotAuthenticated,
    OpenSTIError,
    PermissionDenied,
    StoreUnavailable,
)

__all__ = [
    "KnownToken",
    "STIRAccess",
    "TokenCache",
    "parse_networks",
    "store_tokens",
]

_log = logging.getLogger(__name__)

#: Roles whose token may sign and verify (values of :class:`opensti.store.Role`).
STIR_ROLES = frozenset({"signer", "admin"})
_MAX_TOKEN = 256
#: Token values remembered for their digest; a node has a handful of live tokens.
_MAX_REMEMBERED = 1024
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class KnownToken:
    """What the cache keeps of a live token: never the value, only its digest."""

    id: int
    name: str
    role: str
    expires_at: dt.datetime | None = None


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """``10.0.0.0/8``, ``192.0.2.7`` or ``2001:db8::/32``; InvalidInput names a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise InvalidInput(f"not an address or network: {value!r}", value=value) from None
    return tuple(networks)


@dataclass
class TokenCache:
    """Live tokens by digest, loaded by ``load`` (a blocking store read)."""

    load: Callable[[], Mapping[str, KnownToken]]
    #: Called with the ids of tokens used since the last refresh (a store write).
    touch: Callable[[Sequence[int]], None] | None = None
    refresh_seconds: float = 5.0
    miss_refresh_seconds: float = 1.0
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], dt.datetime] = _utc_now
    _tokens: Mapping[str, KnownToken] = field(default_factory=dict)
    _loaded_at: float | None = None
    _used: set[int] = field(default_factory=set)
    _lock: asyncio.Lock | None = None
    _behind: asyncio.Task[None] | None = None
    #: Why the last reload failed (None: it did not); tokens it may have brought are
    #: not known to be unknown.
    _unreadable: OpenSTIError | None = None
    #: Live tokens by value, as requests presented them: what saves hashing every
    #: request's token. Filled only with tokens found, emptied with each reload (so a
    #: revoked token goes with the map it came from), and bounded.
    _by_value: dict[str, KnownToken] = field(default_factory=dict)

    def _reload(self, used: Sequence[int]) -> Mapping[str, KnownToken] | OpenSTIError:
        """The store's live tokens and the use recorded, or the error that kept them from
        being read (the last ones are kept). Blocking: run in a worker thread, which
        touches none of the cache's state."""
        try:
            tokens = self.load()
        except OpenSTIError as error:
            if self._loaded_at is None:
                raise  # nothing to go on: the request gets the store's 503
            # Keep the tokens known so far: a store hiccup must not stop signing.
            _log.warning("cannot reload the API tokens, keeping the last ones: %s", error)
            return error  # and no write: it would wait out the busy timeout again
        if used and self.touch is not None:
            try:
                self.touch(used)
            except OpenSTIError as error:  # a read-only store must not stop signing
                _log.warning("cannot record token use: %s", error)
        return tokens

    async def refresh(self, *, older_than: float = 0.0) -> None:
        """Reload in a thread, once for all the requests that asked at the same time;
        the new tokens replace the old ones on the loop, between two requests."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._loaded_at is not None and self.clock() - self._loaded_at < older_than:
                return
            used, self._used = sorted(self._used), set()
            loaded = await asyncio.to_thread(self._reload, used)
            if isinstance(loaded, OpenSTIError):
                self._unreadable = loaded
                self._used.update(used)  # recorded with the next reload
            else:
                self._tokens, self._by_value, self._unreadable = loaded, {}, None
            self._loaded_at = self.clock()

    def _refresh_behind(self) -> None:
        """Start the periodic refresh unless it runs already; nobody waits for it.

        Awaited, it held up every request that came in while the store was slow: up to
        SQLite's 10 s busy timeout every few seconds while another process held the
        lock."""
        if self._behind is None or self._behind.done():
            self._behind = asyncio.get_running_loop().create_task(
                self.refresh(older_than=self.refresh_seconds)
            )
            self._behind.add_done_callback(_report_failure)

    async def lookup(self, value: str) -> KnownToken | None:
        """The live token with this value, or None (unknown, revoked or expired)."""
        if self._loaded_at is None:
            await self.refresh()  # nothing to go on yet
        elif self.clock() - self._loaded_at >= self.refresh_seconds:
            self._refresh_behind()
        token = self._by_value.get(value)
        if token is None:
            token = await self._find(value)
        if token is None or (token.expires_at is not None and token.expires_at <= self.now()):
            return None
        self._used.add(token.id)
        return token

    async def _find(self, value: str) -> KnownToken | None:
        digest = _digest(value)
        token = self._tokens.get(digest)
        if token is None and self._behind is not None and not self._behind.done():
            await asyncio.wait((self._behind,))  # the reload under way may bring it
            token = self._tokens.get(digest)
        if token is None:
            await self.refresh(older_than=self.miss_refresh_seconds)
            token = self._tokens.get(digest)
        if token is None and self._unreadable is not None:
            # Not "unknown": a token made since the last good read may be live, and a
            # 401 would tell the SBC its credential is wrong rather than to retry.
            raise StoreUnavailable(
                f"cannot check the API token: the token store cannot be read ({self._unreadable})"
            ) from None
        if token is not None:
            if len(self._by_value) >= _MAX_REMEMBERED:
                self._by_value = {}
            self._by_value[value] = token
        return token


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        _log.error("cannot reload the API tokens: %s", error, exc_info=error)


def store_tokens(database: Any) -> TokenCache:
    """A cache over the store's ``api_token`` table (``database``: a store Database)."""
    from sqlalchemy import select, update

    from opensti.store import ApiToken

    def load() -> dict[str, KnownToken]:
        with database.read_session() as session:
            rows = session.execute(
                select(
                    ApiToken.token_hash,
                    ApiToken.id,
                    ApiToken.name,
                    ApiToken.role,
                    ApiToken.expires_at,
                ).where(ApiToken.revoked.is_(False))
            ).all()
        return {row[0]: KnownToken(row[1], row[2], str(row[3].value), row[4]) for row in rows}

    def touch(ids: Sequence[int]) -> None:
        with database.session() as session:
            session.execute(
                update(ApiToken).where(ApiToken.id.in_(ids)).values(last_used_at=_utc_now())
            )

    return TokenCache(load=load, touch=touch)


def _bearer(headers: Headers) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credential = bytes(value).decode("latin-1").partition(" ")
            token = credential.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


@dataclass
class STIRAccess:
    """The STIR API's door: tokens, client certificates and an address allowlist."""

    tokens: TokenCache | None = None
    allow: tuple[Network, ...] = ()
    client_certificates: bool = False

    def _allowed_address(self, client: tuple[str, int] | None) -> bool:
        if not self.allow or not client:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(address in network for network in self.allow)

    async def check(self, request: STIRRequest, *, metrics: bool = False) -> None:
        """Return if the request may go on; else raise NotAuthenticated/PermissionDenied."""
        value = _bearer(request.headers)
        if value is None:
            if self._allowed_address(request.client) or (
                self.client_certificates and bool(request.client_cert_chain)
            ):
                return
            raise NotAuthenticated(
                "this endpoint needs a credential: a bearer token of the signer role, "
                "a client certificate or an allowed source address"
            )
        token = None
        if len(value) <= _MAX_TOKEN and self.tokens is not None:
            token = await self.tokens.lookup(value)
        if token is None:
            raise NotAuthenticated("the API token is unknown, revoked or expired")
        if not metrics and token.role not in STIR_ROLES:
            raise PermissionDenied(
                f"token {token.name!r} has role {token.role}; this needs signer or admin"
            )
