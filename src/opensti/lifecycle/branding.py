"""The Rich Call Data an entry asserts (RFC 9795): display name and logo.

The logo's ``rcdi`` digest is computed from the bytes its URL serves when the operator
sets it (so a logo that cannot be fetched is refused at once) and again on refresh
(:func:`refresh_icons`, run by ``opensti serve`` on a schedule); the digest lives in
the store, so signing a call never fetches anything.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from opensti.core.bounds import check_icon_url
from opensti.core.errors import BadIdentityInfo, InvalidInput
from opensti.core.rcd import build_rcd_claims, rcdi_digest
from opensti.store import CertificateEntry, Database, list_entries

__all__ = [
    "IconFetch",
    "IconRefresh",
    "entry_rcd_claims",
    "fetch_icon_digest",
    "icon_digest",
    "refresh_icons",
]

#: Fetches a logo's bytes under the x5u fetch rules, raising BadIdentityInfo.
IconFetch = Callable[[str], Awaitable[bytes]]

_T = TypeVar("_T")
log = logging.getLogger(__name__)


def run_blocking(work: Coroutine[Any, Any, _T]) -> _T:
    """Run ``work`` to the end from synchronous code, even when this thread already
    runs an event loop (a caller that is itself async): then on a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


def entry_rcd_claims(entry: CertificateEntry) -> dict[str, Any] | None:
    """The rcd/rcdi claims the entry's calls carry, or None when it asserts none."""
    if entry.rcd_name is None and entry.rcd_icon_url is None:
        return None
    return build_rcd_claims(
        name=entry.rcd_name,
        icon=entry.rcd_icon_url,
        icon_digest=entry.rcd_icon_digest if entry.rcd_icon_url else None,
    )


async def fetch_icon_digest(fetch: IconFetch | None, url: str) -> str:
    """The rcdi digest (``sha256-...``) of the logo at ``url`` (checked: https), as
    ``fetch`` gets it; raise :class:`InvalidInput` saying why it cannot be used."""
    url = check_icon_url(url)
    if fetch is None:
        raise InvalidInput("rcd icons cannot be fetched here (no fetcher configured)")
    try:
        return rcdi_digest(await fetch(url))
    except BadIdentityInfo as exc:
        raise InvalidInput(f"the rcd icon cannot be used: {exc.message}", value=url) from None


def icon_digest(fetch: IconFetch | None, url: str) -> str:
    """:func:`fetch_icon_digest` from synchronous code (the CLI, a form, a thread)."""
    return run_blocking(fetch_icon_digest(fetch, url))


@dataclass(frozen=True, slots=True)
class IconRefresh:
    """One entry's logo fetched again: whether its digest changed, or why it failed."""

    entry: str
    url: str
    changed: bool = False
    error: str | None = None


def refresh_icons(database: Database, fetch: IconFetch | None) -> list[IconRefresh]:
    """Fetch every entry's logo again and store the digests that changed (each node's
    keyring then reloads, as for any signing change). A logo that cannot be fetched
    keeps its last digest: the calls stay branded, and the failure is reported."""
    with database.read_session() as session:
        icons = [(e.id, e.name, e.rcd_icon_url, e.rcd_icon_digest) for e in list_entries(session)]
    done = []
    for entry_id, name, url, known in icons:
        if url is None:
            continue
        try:
            digest = icon_digest(fetch, url)
        except InvalidInput as exc:
            log.warning("entry %s: rcd icon not refreshed: %s", name, exc.message)
            done.append(IconRefresh(name, url, error=exc.message))
            continue
        if digest != known:
            with database.session() as session:
                entry = session.get(CertificateEntry, entry_id)
                if entry is not None and entry.rcd_icon_url == url:  # not changed meanwhile
                    entry.rcd_icon_digest = digest
        done.append(IconRefresh(name, url, changed=digest != known))
    return done
