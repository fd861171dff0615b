"""The STI-CR app through httpx's ASGI transport, with a clock the test moves."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from opensti.core.certs import load_certificate_chain
from opensti.repository import PublishedChains, RepositoryApp, x5u_for
from opensti.store import CertificateState, follow_store, open_database, set_certificate_state
from tests.lifecycle.lifecycle_support import Store

pytestmark = pytest.mark.db_dialect

BASE = "https://cr.example.test"
HOUR = dt.timedelta(hours=1)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock(store: Store) -> Clock:
    return Clock(store.pki.now)


@pytest.fixture
def app(store: Store, clock: Clock) -> RepositoryApp:
    chains = PublishedChains(store.db, clock=clock, miss_reload_interval=0)
    return RepositoryApp(chains, max_age_cap=86_400, clock=clock)


def _client(app: RepositoryApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


async def _get(app: RepositoryApp, certificate_id: int, **headers: str) -> httpx.Response:
    async with _client(app) as client:
        return await client.get(x5u_for(certificate_id, BASE), headers=headers)


@pytest.fixture
def queries(store: Store) -> Iterator[list[str]]:
    """Every SQL statement the store's engine runs while the test goes on."""
    seen: list[str] = []

    def _count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(store.db.engine, "before_cursor_execute", _count)
    yield seen
    event.remove(store.db.engine, "before_cursor_execute", _count)


def test_x5u_for_builds_one_stable_url_per_certificate() -> None:
    assert x5u_for(7, "https://cr.example.test/") == "https://cr.example.test/sti-cr/7.pem"
    assert (
        x5u_for(7, "https://cdn.example.test/base") == "https://cdn.example.test/base/sti-cr/7.pem"
    )
    with pytest.raises(ValueError, match="certificate id"):
        x5u_for(0, BASE)


async def test_serves_the_chain_with_repository_headers(
    store: Store, app: RepositoryApp, queries: list[str]
) -> None:
    cert = store.certificate(store.entry())
    await app.reload()
    queries.clear()
    response = await _get(app, cert.id)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pem-certificate-chain"
    assert response.headers["cache-control"] == "public, max-age=86400"
    assert response.headers["etag"].startswith('"')
    chain = load_certificate_chain(response.content)
    assert format(chain.leaf.serial_number, "x") == cert.serial
    assert chain.intermediates[0] == store.pki.intermediate.certificate
    assert queries == []  # a hit is answered from memory


async def test_max_age_never_outlives_the_certificate(
    store: Store, app: RepositoryApp, clock: Clock
) -> None:
    cert = store.certificate(store.entry(), days=0.5)
    await app.reload()
    clock.now = store.pki.now + HOUR
    response = await _get(app, cert.id)
    assert response.headers["cache-control"] == "public, max-age=39600"  # 12 h - 1 h


async def test_old_certificate_stays_published_after_a_new_one(
    store: Store, app: RepositoryApp
) -> None:
    entry = store.entry()
    old = store.certificate(entry)
    new = store.certificate(entry)
    await app.reload()
    old_response, new_response = await _get(app, old.id), await _get(app, new.id)
    assert (old_response.status_code, new_response.status_code) == (200, 200)
    assert old_response.content != new_response.content
    assert new_response.content.decode() == new.chain_pem


async def test_expired_certificate_is_gone_then_unknown(
    store: Store, app: RepositoryApp, clock: Clock
) -> None:
    cert = store.certificate(store.entry(), days=1)
    await app.reload()
    clock.now = cert.not_after
    assert (await _get(app, cert.id)).status_code == 410
    await app.reload()
    assert (await _get(app, cert.id)).status_code == 404


async def test_revoked_certificate_is_withdrawn(store: Store, app: RepositoryApp) -> None:
    cert = store.certificate(store.entry())
    await app.reload()
    assert (await _get(app, cert.id)).status_code == 200
    with store.db.session() as session:
        set_certificate_state(session, cert.id, CertificateState.REVOKED, now=store.pki.now)
    await app.reload()
    assert (await _get(app, cert.id)).status_code == 404


async def test_issued_pending_certificate_is_published_before_activation(
    store: Store, app: RepositoryApp
) -> None:
    # The x5u must answer before the first call is signed with the new certificate.
    cert = store.certificate(store.entry(), activate=False)
    await app.reload()
    assert (await _get(app, cert.id)).status_code == 200


async def test_failed_certificate_is_not_published(store: Store, app: RepositoryApp) -> None:
    cert = store.certificate(store.entry(), activate=False)
    with store.db.session() as session:
        set_certificate_state(session, cert.id, CertificateState.FAILED, now=store.pki.now)
    await app.reload()
    assert (await _get(app, cert.id)).status_code == 404


async def test_conditional_get_answers_304(store: Store, app: RepositoryApp) -> None:
    cert = store.certificate(store.entry())
    await app.reload()
    first = await _get(app, cert.id)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert email.utils.parsedate_to_datetime(modified) == cert.not_before
    by_tag = await _get(app, cert.id, **{"If-None-Match": f'"other", W/{etag}'})
    assert (by_tag.status_code, by_tag.content) == (304, b"")
    assert by_tag.headers["etag"] == etag
    assert "max-age=" in by_tag.headers["cache-control"]
    by_date = await _get(app, cert.id, **{"If-Modified-Since": modified})
    assert by_date.status_code == 304
    stale_tag = await _get(
        app, cert.id, **{"If-None-Match": '"other"', "If-Modified-Since": modified}
    )
    assert stale_tag.status_code == 200  # If-None-Match decides when both are sent
    earlier = email.utils.format_datetime(cert.not_before - HOUR, usegmt=True)
    assert (await _get(app, cert.id, **{"If-Modified-Since": earlier})).status_code == 200


async def test_head_and_other_methods(store: Store, app: RepositoryApp) -> None:
    cert = store.certificate(store.entry())
    await app.reload()
    async with _client(app) as client:
        head = await client.head(x5u_for(cert.id, BASE))
        post = await client.post(x5u_for(cert.id, BASE), content=b"x")
        elsewhere = await client.get("/sti-cr/../secret.key")
        not_a_number = await client.get("/sti-cr/01.pem")
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) == len(cert.chain_pem or "")
    assert post.status_code == 405
    assert post.headers["allow"] == "GET, HEAD"
    assert (elsewhere.status_code, not_a_number.status_code) == (404, 404)


async def test_newer_unknown_id_reloads_at_most_once_per_interval(
    store: Store, clock: Clock, queries: list[str]
) -> None:
    ticks = [0.0]
    chains = PublishedChains(
        store.db, clock=clock, miss_reload_interval=10, monotonic=lambda: ticks[0]
    )
    app = RepositoryApp(chains, clock=clock)
    entry = store.entry()
    first = store.certificate(entry)
    await app.reload()
    second = store.certificate(entry)  # activated by another process after the load
    queries.clear()
    assert (await _get(app, second.id)).status_code == 200
    assert queries  # the miss reloaded the snapshot
    queries.clear()
    assert (await _get(app, second.id + 1)).status_code == 404
    assert (await _get(app, first.id)).status_code == 200
    assert queries == []  # throttled, and a known id never queries
    ticks[0] = 11.0
    assert (await _get(app, second.id + 1)).status_code == 404
    assert queries


async def test_mounted_under_sti_cr_prefix(store: Store, app: RepositoryApp) -> None:
    cert = store.certificate(store.entry())
    await app.reload()
    scope_root = "/sti-cr"
    transport = httpx.ASGITransport(app=app, root_path=scope_root)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        response = await client.get(f"{scope_root}/{cert.id}.pem")
    assert response.status_code == 200


async def _until(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_chain_published_by_another_process_is_loaded_without_a_request(
    store: Store, clock: Clock
) -> None:
    # This STI-CR is another node: its own engine, and no periodic refresh to speak of.
    node = open_database(store.db.url)
    app = RepositoryApp(PublishedChains(node, clock=clock), refresh_interval=3600, clock=clock)
    await app.start()
    assert app.watch is not None
    follow = asyncio.create_task(follow_store(node, [app.watch], poll_interval=0.1))
    try:
        cert = store.certificate(store.entry(), activate=False)  # its chain is stored
        await _until(lambda: app.chains.get(cert.id) is not None, "the new chain")
        with store.db.session() as session:
            set_certificate_state(session, cert.id, CertificateState.FAILED, now=store.pki.now)
        await _until(lambda: app.chains.get(cert.id) is None, "the withdrawal")
    finally:
        follow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follow
        await app.stop()
        node.dispose()
