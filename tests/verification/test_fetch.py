"""X5UFetcher against a real HTTPS server on 127.0.0.1, playing good and hostile x5u hosts."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from opensti.core.certs import load_certificate_chain
from opensti.core.errors import BadIdentityInfo
from opensti.sandbox.pki import DemoPKI
from opensti.verification.fetch import FetchPolicy, TLSVerify, X5UFetcher
from tests._servers import PROXY_VARIABLES, LocalHTTPServer, Route, TLSFiles, make_tls_files, serve

pytestmark = pytest.mark.integration

#: Loopback is refused by default, so every test that wants an answer allows it.
LOCAL = FetchPolicy(allow_private=True, connect_timeout=2.0, read_timeout=2.0)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx honours proxy variables; a proxy would take our 127.0.0.1 requests elsewhere.
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def chain_pem() -> bytes:
    pki = DemoPKI(dt.datetime.now(dt.UTC))
    _, cert = pki.issue("1234")
    return pki.chain_pem(cert)


@pytest.fixture
def https(tls: TLSFiles, chain_pem: bytes) -> Iterator[LocalHTTPServer]:
    with serve(tls) as server:
        server.routes["/chain.pem"] = Route.body(chain_pem)
        yield server


async def fetch(url: str, policy: FetchPolicy = LOCAL, verify: TLSVerify = True) -> bytes:
    async with X5UFetcher(policy, verify=verify) as fetcher:
        return await fetcher.fetch(url)


async def test_fetches_a_chain_over_https(
    https: LocalHTTPServer, tls: TLSFiles, chain_pem: bytes
) -> None:
    body = await fetch(https.url("/chain.pem"), verify=str(tls.root_pem))
    assert body == chain_pem
    assert load_certificate_chain(body).intermediates
    assert https.requests == ["/chain.pem"]


async def test_accepts_a_path_or_an_ssl_context_as_trust(
    https: LocalHTTPServer, tls: TLSFiles, chain_pem: bytes
) -> None:
    context = ssl.create_default_context(cafile=str(tls.root_pem))
    assert await fetch(https.url("/chain.pem"), verify=tls.root_pem) == chain_pem
    assert await fetch(https.url("/chain.pem", host="localhost"), verify=context) == chain_pem


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_is_refused_by_default(
    https: LocalHTTPServer, tls: TLSFiles, host: str
) -> None:
    with pytest.raises(BadIdentityInfo, match="non-public address"):
        await fetch(https.url("/chain.pem", host=host), FetchPolicy(), verify=tls.root_pem)
    assert https.requests == []


async def test_plain_http_needs_allow_http(chain_pem: bytes) -> None:
    with serve() as server:
        server.routes["/chain.pem"] = Route.body(chain_pem)
        with pytest.raises(BadIdentityInfo, match="must be an https URL"):
            await fetch(server.url("/chain.pem"))
        assert server.requests == []
        allowed = FetchPolicy(allow_http=True, allow_private=True)
        assert await fetch(server.url("/chain.pem"), allowed) == chain_pem


async def test_http_error_status_is_refused(https: LocalHTTPServer, tls: TLSFiles) -> None:
    with pytest.raises(BadIdentityInfo, match="HTTP 404"):
        await fetch(https.url("/missing.pem"), verify=tls.root_pem)


async def test_slow_server_times_out(https: LocalHTTPServer, tls: TLSFiles) -> None:
    https.routes["/slow.pem"] = Route.body(b"late", header_delay=5.0)
    policy = FetchPolicy(allow_private=True, read_timeout=0.3)
    with pytest.raises(BadIdentityInfo, match="timed out"):
        await fetch(https.url("/slow.pem"), policy, verify=tls.root_pem)


async def test_trickling_server_hits_the_total_deadline(
    https: LocalHTTPServer, tls: TLSFiles, chain_pem: bytes
) -> None:
    # Every chunk arrives well within the read timeout; only a deadline on the whole
    # fetch stops a peer that sends one byte at a time for ever.
    https.routes["/trickle.pem"] = Route(chunks=tuple(bytes([b]) for b in chain_pem), pause=0.1)
    policy = FetchPolicy(allow_private=True, read_timeout=1.0, total_timeout=0.5)
    with pytest.raises(BadIdentityInfo, match="timed out"):
        await fetch(https.url("/trickle.pem"), policy, verify=tls.root_pem)


async def test_body_over_the_cap_is_refused(https: LocalHTTPServer, tls: TLSFiles) -> None:
    policy = FetchPolicy(allow_private=True, max_bytes=1000)
    https.routes["/big.pem"] = Route.body(b"A" * 1001)
    https.routes["/fits.pem"] = Route.body(b"A" * 1000)
    with pytest.raises(BadIdentityInfo, match="larger than allowed"):
        await fetch(https.url("/big.pem"), policy, verify=tls.root_pem)
    assert await fetch(https.url("/fits.pem"), policy, verify=tls.root_pem) == b"A" * 1000


async def test_follows_redirects_up_to_the_limit(
    https: LocalHTTPServer, tls: TLSFiles, chain_pem: bytes
) -> None:
    https.routes["/r1"] = Route.redirect("/chain.pem")
    https.routes["/r2"] = Route.redirect(https.url("/r1"), status=301)
    policy = FetchPolicy(allow_private=True, max_redirects=2)
    assert await fetch(https.url("/r2"), policy, verify=tls.root_pem) == chain_pem
    assert https.requests == ["/r2", "/r1", "/chain.pem"]


async def test_too_many_redirects_are_refused(https: LocalHTTPServer, tls: TLSFiles) -> None:
    https.routes["/r1"] = Route.redirect("/chain.pem")
    https.routes["/r2"] = Route.redirect("/r1")
    https.routes["/r3"] = Route.redirect("/r2")
    policy = FetchPolicy(allow_private=True, max_redirects=2)
    with pytest.raises(BadIdentityInfo, match="redirected too many times"):
        await fetch(https.url("/r3"), policy, verify=tls.root_pem)
    assert https.requests == ["/r3", "/r2", "/r1"]


async def test_redirect_to_plain_http_is_refused(https: LocalHTTPServer, tls: TLSFiles) -> None:
    https.routes["/downgrade"] = Route.redirect(f"http://127.0.0.1:{https.port}/chain.pem")
    with pytest.raises(BadIdentityInfo, match="must be an https URL"):
        await fetch(https.url("/downgrade"), verify=tls.root_pem)


@pytest.mark.parametrize(
    ("content_type", "accepted"),
    [
        ("application/pem-certificate-chain; charset=utf-8", True),
        ("application/x-x509-ca-cert", True),
        ("text/html", False),
        ("application/json", False),
    ],
)
async def test_content_type_must_be_a_certificate_type(
    https: LocalHTTPServer, tls: TLSFiles, chain_pem: bytes, content_type: str, accepted: bool
) -> None:
    https.routes["/typed"] = Route.body(chain_pem, content_type=content_type)
    if accepted:
        assert await fetch(https.url("/typed"), verify=tls.root_pem) == chain_pem
    else:
        with pytest.raises(BadIdentityInfo, match="is not a certificate"):
            await fetch(https.url("/typed"), verify=tls.root_pem)


async def test_untrusted_server_certificate_fails(https: LocalHTTPServer, tmp_path: Path) -> None:
    other_root = make_tls_files(tmp_path, label="other").root_pem
    with pytest.raises(BadIdentityInfo, match="failed"):
        await fetch(https.url("/chain.pem"), verify=other_root)
    with pytest.raises(BadIdentityInfo, match="failed"):
        await fetch(https.url("/chain.pem"), verify=True)
    assert https.requests == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1/chain.pem", "must be an https URL"),
        ("https://user:pw@127.0.0.1/chain.pem", "not a plain host URL"),
        ("https:///chain.pem", "not a plain host URL"),
        ("https://127.0.0.1:99999/chain.pem", "invalid port"),
    ],
)
async def test_unusable_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(BadIdentityInfo, match=message):
        await fetch(url)


@pytest.mark.parametrize(
    "host",
    ["[::127.0.0.1]", "[::a00:1]", "[64:ff9b::7f00:1]", "[64:ff9b::808:808]", "[2002:7f00:1::1]"],
    ids=["ipv4-compatible-loopback", "ipv4-compatible-private", "nat64-loopback", "nat64-public",
         "6to4-loopback"],
)  # fmt: skip
async def test_ipv6_forms_of_ipv4_are_not_public(host: str) -> None:
    """IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 addresses that lead to
    loopback or private IPv4 (or through a translator) are refused before connecting."""
    with pytest.raises(BadIdentityInfo, match="non-public"):
        await fetch(f"https://{host}/chain.pem", FetchPolicy())


async def test_private_hosts_by_name_or_network(
    https: LocalHTTPServer, tls: TLSFiles, chain_pem: bytes
) -> None:
    url = https.url("/chain.pem")
    assert "127.0.0.1" in url
    for allowed in (("127.0.0.1",), ("10.0.0.0/8", "127.0.0.0/8"), ("127.0.0.*",)):
        policy = FetchPolicy(private_hosts=allowed)
        assert await fetch(url, policy, verify=str(tls.root_pem)) == chain_pem
    with pytest.raises(BadIdentityInfo, match="non-public"):
        await fetch(url, FetchPolicy(private_hosts=("sti-cr.lab", "10.0.0.0/8")))


async def test_denied_hosts_are_never_fetched(https: LocalHTTPServer, tls: TLSFiles) -> None:
    denied = FetchPolicy(allow_private=True, deny_hosts=("127.0.0.*",))
    with pytest.raises(BadIdentityInfo, match="deny list"):
        await fetch(https.url("/chain.pem"), denied, verify=str(tls.root_pem))
    assert https.requests == []
