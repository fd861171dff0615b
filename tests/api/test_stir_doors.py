"""The STIR API is closed by default: who gets in (signer/admin tokens, an address
allowlist, a client certificate), how a refusal looks (401/403, ATIS-1000082 shape),
and the input bounds every request meets (iat, origid, time)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from opensti.api._stir_access import store_tokens
from opensti.api.stir import STIRAccess, STIRApp, parse_networks
from opensti.app import App
from opensti.config import load_settings
from opensti.signing import Keyring, SigningEntry, SigningService
from opensti.store import ApiToken, Role, _database, revoke_api_token
from opensti.verification import FetchPolicy, TrustStore, VerificationService, X5UFetcher
from tests.store.conftest import lock_out_readers

PATHS = ("/stir/v1/signing", "/stir/v1/signing/batch", "/stir/v1/verification")


@pytest.fixture
def store_app(tmp_path: Path, database_url: str) -> Iterator[App]:
    settings = load_settings(data_dir=tmp_path / "data", database_url=database_url)
    with App.from_settings(settings, migrate=True) as application:
        yield application


def _stir(
    application: App, *, allow: tuple[str, ...] = (), verifier: VerificationService | None = None
) -> STIRApp:
    key = ec.generate_private_key(ec.SECP256R1())
    x5u = "https://sti-cr.example.net/sti-cr/1.pem"
    keyring = Keyring([SigningEntry(name="main", spc="1234", key=key, x5u=x5u, is_default=True)])
    access = STIRAccess(tokens=store_tokens(application.database), allow=parse_networks(allow))
    return STIRApp(SigningService(keyring), verifier, access=access)


@pytest.fixture
def tokens(store_app: App) -> dict[Role, str]:
    return {
        role: store_app.create_api_token(name=f"t-{role.value}", role=role).reveal_text()
        for role in Role
    }


def _client(app: STIRApp, address: str = "192.0.2.9") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://stir.test")


@pytest.fixture
async def client(store_app: App) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(_stir(store_app)) as http:
        yield http


def _signing(**overrides: Any) -> dict[str, Any]:
    request = {"orig": {"tn": "12155550121"}, "dest": {"tn": ["12155550131"]}, "attest": "A"}
    request.update(overrides)
    return {"signingRequest": request}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assert_refusal(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    policy = body["requestError"]["policyException"]
    assert policy["messageId"].startswith("POL")
    assert policy["text"]
    assert body["error"]["type"] == ("NotAuthenticated" if status == 401 else "PermissionDenied")


async def test_no_credential_is_refused_everywhere_but_health(
    client: httpx.AsyncClient,
) -> None:
    for path in PATHS:
        response = await client.post(path, json=_signing())
        _assert_refusal(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    _assert_refusal(await client.get("/metrics"), 401)
    _assert_refusal(await client.post(PATHS[0], json=_signing(), headers=_bearer("osti_x")), 401)
    assert (await client.get("/health")).json() == {"status": "ok"}


async def test_only_signer_and_admin_tokens_may_sign(
    client: httpx.AsyncClient, tokens: dict[Role, str]
) -> None:
    for role in (Role.SIGNER, Role.ADMIN):
        response = await client.post(PATHS[0], json=_signing(), headers=_bearer(tokens[role]))
        assert response.status_code == 200, response.text
        assert ";info=<https://" in response.json()["signingResponse"]["identity"]
    for role in (Role.OPERATOR, Role.READ_ONLY):
        response = await client.post(PATHS[0], json=_signing(), headers=_bearer(tokens[role]))
        _assert_refusal(response, 403)
    # Any live token may read the metrics.
    metrics = await client.get("/metrics", headers=_bearer(tokens[Role.READ_ONLY]))
    assert metrics.status_code == 200
    assert "opensti_" in metrics.text


async def test_a_revoked_token_stops_working_without_a_restart(
    store_app: App, tokens: dict[Role, str]
) -> None:
    app = _stir(store_app)
    assert app.access.tokens is not None
    app.access.tokens.refresh_seconds = 0  # every request looks at the store again
    async with _client(app) as http:
        signer = _bearer(tokens[Role.SIGNER])
        assert (await http.post(PATHS[0], json=_signing(), headers=signer)).status_code == 200
        with store_app.database.session() as session:
            revoke_api_token(session, f"t-{Role.SIGNER.value}")
        # The refresh runs behind the requests: the revocation lands within a few.
        statuses = []
        for _ in range(50):
            response = await http.post(PATHS[0], json=_signing(), headers=signer)
            statuses.append(response.status_code)
            if response.status_code != 200:
                break
            await asyncio.sleep(0.02)
        assert statuses[-1] == 401, statuses
        _assert_refusal(response, 401)
        _assert_refusal(await http.post(PATHS[0], json=_signing(), headers=signer), 401)
        # A token made after the cache was loaded works at once.
        new = store_app.create_api_token(name="late", role=Role.SIGNER).reveal_text()
        assert (await http.post(PATHS[0], json=_signing(), headers=_bearer(new))).status_code == 200


async def test_a_locked_store_does_not_hold_up_signing(
    store_app: App, tokens: dict[Role, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holding SQLite's lock (a backup, a worker stopped mid-write):
    the periodic token refresh waits out the busy timeout behind the requests, which
    are answered with the tokens known meanwhile. Awaited, it held each one up."""
    if store_app.database.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's file lock")
    monkeypatch.setattr(_database, "BUSY_TIMEOUT_MS", 3000)
    store_app.database.dispose()  # new connections take the busy timeout above
    app = _stir(store_app)
    cache = app.access.tokens
    assert cache is not None
    signer = _bearer(tokens[Role.SIGNER])
    async with _client(app) as http:
        assert (await http.post(PATHS[0], json=_signing(), headers=signer)).status_code == 200
        store_app.database.dispose()  # the lock below needs every connection closed
        path = store_app.database.engine.url.database
        assert path is not None
        holder = lock_out_readers(path)
        try:
            cache.refresh_seconds = 0  # every request finds the tokens due a refresh
            started = time.monotonic()
            for _ in range(5):
                response = await http.post(PATHS[0], json=_signing(), headers=signer)
                assert response.status_code == 200, response.text
            assert time.monotonic() - started < 1.5  # not one busy timeout (3 s)
        finally:
            holder.close()


async def test_a_token_the_cache_has_not_seen_is_not_refused_while_the_store_is_locked(
    store_app: App, tokens: dict[Role, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token made since the cache last read the store may be live: while the store
    cannot be read, the SBC gets 503 (retry), not 401 (a wrong credential)."""
    if store_app.database.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's file lock")
    monkeypatch.setattr(_database, "BUSY_TIMEOUT_MS", 200)
    store_app.database.dispose()
    app = _stir(store_app)
    cache = app.access.tokens
    assert cache is not None
    cache.miss_refresh_seconds = 0  # a token not yet seen always sends it to the store
    signer, admin = _bearer(tokens[Role.SIGNER]), _bearer(tokens[Role.ADMIN])
    async with _client(app) as http:
        assert (await http.post(PATHS[0], json=_signing(), headers=signer)).status_code == 200
        assert (await http.post(PATHS[0], json=_signing(), headers=admin)).status_code == 200
        late = _bearer(store_app.create_api_token(name="late", role=Role.SIGNER).reveal_text())
        store_app.database.dispose()
        path = store_app.database.engine.url.database
        assert path is not None
        holder = lock_out_readers(path)
        try:
            response = await http.post(PATHS[0], json=_signing(), headers=late)
            assert response.status_code == 503, response.text
            assert "token store cannot be read" in response.json()["error"]["message"]
            # Tokens already known go on signing meanwhile.
            assert (await http.post(PATHS[0], json=_signing(), headers=signer)).status_code == 200
        finally:
            holder.close()
        assert (await http.post(PATHS[0], json=_signing(), headers=late)).status_code == 200
        unknown = await http.post(PATHS[0], json=_signing(), headers=_bearer("osti_nobody"))
        _assert_refusal(unknown, 401)
    # The admin token's use, pending when the store could not be read, was kept.
    with store_app.database.read_session() as session:
        row = session.query(ApiToken).filter_by(name=f"t-{Role.ADMIN.value}").one()
        assert row.last_used_at is not None


async def test_tokens_are_checked_in_memory_and_use_is_recorded_once(
    store_app: App, tokens: dict[Role, str]
) -> None:
    app = _stir(store_app)
    cache = app.access.tokens
    assert cache is not None
    loads = 0
    real_load = cache.load

    def counting_load() -> Any:
        nonlocal loads
        loads += 1
        return real_load()

    cache.load = counting_load
    async with _client(app) as http:
        for _ in range(30):
            response = await http.post(
                PATHS[0], json=_signing(), headers=_bearer(tokens[Role.SIGNER])
            )
            assert response.status_code == 200
    assert loads == 1  # one store read for thirty requests
    await cache.refresh()  # the next refresh writes last_used_at, once
    with store_app.database.read_session() as session:
        row = session.query(ApiToken).filter_by(name=f"t-{Role.SIGNER.value}").one()
        assert row.last_used_at is not None


async def test_the_address_allowlist_lets_an_sbc_in_without_a_token(store_app: App) -> None:
    app = _stir(store_app, allow=("198.51.100.0/24",))
    async with _client(app, "198.51.100.20") as inside, _client(app, "203.0.113.5") as outside:
        assert (await inside.post(PATHS[0], json=_signing())).status_code == 200
        assert (await inside.get("/metrics")).status_code == 200
        _assert_refusal(await outside.post(PATHS[0], json=_signing()), 401)


async def test_a_verified_client_certificate_lets_an_sbc_in(store_app: App) -> None:
    """The listener (mutual TLS) puts the verified chain in the ASGI TLS extension."""
    app = _stir(store_app)
    app.access.client_certificates = True
    sent: list[dict[str, Any]] = []

    async def call(tls: dict[str, Any]) -> int:
        sent.clear()
        body = json.dumps(_signing()).encode()
        scope = {
            "type": "http",
            "method": "POST",
            "path": PATHS[0],
            "headers": [],
            "client": ("203.0.113.5", 1),
            "extensions": {"tls": tls},
        }
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return int(sent[0]["status"])

    assert await call({"client_cert_chain": ["-----BEGIN CERTIFICATE-----..."]}) == 200
    assert await call({}) == 401


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"iat": 10**20}, "iat"),
        ({"iat": str(10**20)}, "iat"),
        ({"iat": "9" * 5000}, "iat"),
        ({"iat": int(time.time()) + 86_400}, "iat"),
        ({"origid": "x" * 500_000}, "origid"),
    ],
)
async def test_signing_inputs_are_bounded(
    client: httpx.AsyncClient, tokens: dict[Role, str], overrides: dict[str, Any], message: str
) -> None:
    response = await client.post(
        PATHS[0], json=_signing(**overrides), headers=_bearer(tokens[Role.SIGNER])
    )
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]


async def test_a_negative_verification_time_is_refused(store_app: App) -> None:
    verifier = VerificationService(X5UFetcher(FetchPolicy()), TrustStore([]))
    app = _stir(store_app, allow=("192.0.2.0/24",), verifier=verifier)
    request = {
        "verificationRequest": {
            "from": {"tn": "12155550121"},
            "to": {"tn": ["12155550131"]},
            "time": -1,
            "identity": "a.b.c;info=<https://x.example/1.pem>",
        }
    }
    async with _client(app) as http:
        response = await http.post(PATHS[2], json=request)
    assert response.status_code == 400, response.text
    assert "time" in response.json()["error"]["message"]
