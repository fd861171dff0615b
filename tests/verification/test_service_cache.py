"""VerificationService against a real HTTPS x5u repository on 127.0.0.1.

The service's clock is a variable the tests move; the repository counts its requests,
which is how caching, single flight and the circuit breaker are observed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from opensti.core.errors import InvalidCertificate, ResultClass, UpstreamError
from opensti.core.identity import format_identity
from opensti.core.passport import PassportSigner, ShakenClaims
from opensti.core.verify import Verstat
from opensti.sandbox.pki import DemoPKI, issue_ca, issue_crl, to_pem
from opensti.verification import (
    FetchPolicy,
    HTTPGet,
    TrustStore,
    VerificationService,
    VerifyPolicy,
    X5UFetcher,
)
from tests._servers import LocalHTTPServer, Route, TLSFiles, make_tls_files, serve

pytestmark = pytest.mark.integration

START = float(int(time.time()))
ORIG, DEST = "12155550121", "12155550131"


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def pki() -> DemoPKI:
    return DemoPKI(dt.datetime.fromtimestamp(START, dt.UTC))


@pytest.fixture(scope="module")
def credential(pki: DemoPKI) -> tuple[ec.EllipticCurvePrivateKey, bytes, int]:
    key, cert = pki.issue("1234")
    return key, pki.chain_pem(cert), cert.serial_number


@pytest.fixture
def https(
    tls: TLSFiles, credential: tuple[ec.EllipticCurvePrivateKey, bytes, int]
) -> Iterator[LocalHTTPServer]:
    with serve(tls) as server:
        server.routes["/chain.pem"] = Route.body(credential[1])
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fetcher(tls: TLSFiles) -> AsyncIterator[X5UFetcher]:
    async with X5UFetcher(FetchPolicy(allow_private=True), verify=str(tls.root_pem)) as f:
        yield f


def make_service(
    fetcher: X5UFetcher, trust: TrustStore, clock: Clock, **policy: object
) -> VerificationService:
    options: dict[str, object] = {"min_ttl": 10.0, "negative_ttl": 5.0, **policy}
    return VerificationService(fetcher, trust, policy=VerifyPolicy(**options), clock=clock)  # type: ignore[arg-type]


@pytest.fixture
def service(fetcher: X5UFetcher, pki: DemoPKI, clock: Clock) -> VerificationService:
    return make_service(fetcher, TrustStore([pki.root.certificate]), clock)


def identity(key: ec.EllipticCurvePrivateKey, x5u: str, iat: float) -> str:
    claims = ShakenClaims(orig=ORIG, dest=(DEST,), iat=int(iat), attest="A", origid="o-1")
    return format_identity(PassportSigner(key, x5u).sign(claims), x5u)


def chain_requests(server: LocalHTTPServer, path: str = "/chain.pem") -> int:
    return server.requests.count(path)


async def test_second_call_is_served_from_the_cache(
    service: VerificationService, https: LocalHTTPServer, credential: tuple, clock: Clock
) -> None:
    url = https.url("/chain.pem")
    for _ in range(3):
        result = await service.verify([identity(credential[0], url, clock.now)], ORIG, [DEST])
        assert result.verstat is Verstat.PASSED, result.reason
        assert result.certificate is not None
        assert result.certificate.spc == "1234"
    assert chain_requests(https) == 1
    info = service.cache_info()
    assert (info.size, info.hits) == (1, 2)
    assert service.stats().fetches == 1


async def test_ttl_comes_from_cache_control(
    service: VerificationService, https: LocalHTTPServer, credential: tuple, clock: Clock
) -> None:
    https.routes["/chain.pem"] = Route.body(
        credential[1], headers=(("Cache-Control", "public, max-age=120"),)
    )
    url = https.url("/chain.pem")

    async def call() -> None:
        result = await service.verify([identity(credential[0], url, clock.now)], ORIG, DEST)
        assert result.passed, result.reason

    await call()
    clock.now += 119
    await call()
    assert chain_requests(https) == 1
    clock.now += 2
    await call()
    assert chain_requests(https) == 2


async def test_ttl_from_expires_is_clamped_to_the_minimum(
    service: VerificationService, https: LocalHTTPServer, credential: tuple, clock: Clock
) -> None:
    past = "Thu, 01 Jan 2015 00:00:00 GMT"
    https.routes["/chain.pem"] = Route.body(credential[1], headers=(("Expires", past),))
    url = https.url("/chain.pem")
    for step in (0, 9, 2):  # min_ttl is 10 s: cached at +9, fetched again at +11
        clock.now += step
        assert (await service.verify([identity(credential[0], url, clock.now)], ORIG, DEST)).passed
    assert chain_requests(https) == 2


async def test_failures_are_cached_briefly(
    service: VerificationService, https: LocalHTTPServer, credential: tuple, clock: Clock
) -> None:
    url = https.url("/missing.pem")
    first = await service.verify([identity(credential[0], url, clock.now)], ORIG, DEST)
    assert (first.verstat, first.sip_code) == (Verstat.FAILED, 436)
    assert first.result_class is ResultClass.REPOSITORY_ERROR
    again = await service.verify([identity(credential[0], url, clock.now)], ORIG, DEST)
    assert again.sip_code == 436
    assert chain_requests(https, "/missing.pem") == 1
    https.routes["/missing.pem"] = Route.body(credential[1])
    clock.now += 6  # past negative_ttl
    assert (await service.verify([identity(credential[0], url, clock.now)], ORIG, DEST)).passed
    assert chain_requests(https, "/missing.pem") == 2
    assert service.stats().fetch_errors == 1


async def test_concurrent_calls_share_one_fetch(
    service: VerificationService, https: LocalHTTPServer, credential: tuple, clock: Clock
) -> None:
    https.routes["/slow.pem"] = Route.body(credential[1], header_delay=0.4)
    url = https.url("/slow.pem")
    calls = [
        service.verify([identity(credential[0], url, clock.now)], ORIG, DEST) for _ in range(20)
    ]
    results = await asyncio.gather(*calls)
    assert all(r.passed for r in results)
    assert chain_requests(https, "/slow.pem") == 1


async def test_circuit_opens_after_consecutive_failures(
    fetcher: X5UFetcher, pki: DemoPKI, https: LocalHTTPServer, credential: tuple, clock: Clock
) -> None:
    service = make_service(
        fetcher,
        TrustStore([pki.root.certificate]),
        clock,
        negative_ttl=0.0,
        breaker_threshold=2,
        breaker_cooldown=30.0,
    )
    https.routes["/flaky.pem"] = Route.body(b"oops", status=500, content_type="text/plain")
    url = https.url("/flaky.pem")

    async def call() -> tuple[int | None, str]:
        result = await service.verify([identity(credential[0], url, clock.now)], ORIG, DEST)
        return result.sip_code, result.reason

    assert (await call())[0] == 436
    assert (await call())[0] == 436
    assert chain_requests(https, "/flaky.pem") == 2
    code, reason = await call()
    assert code == 436
    assert "not retried" in reason
    assert chain_requests(https, "/flaky.pem") == 2
    assert service.open_circuits() == ["127.0.0.1"]
    https.routes["/flaky.pem"] = Route.body(credential[1])
    clock.now += 31
    assert (await call())[0] is None
    assert chain_requests(https, "/flaky.pem") == 3
    assert service.open_circuits() == []


@pytest.fixture
async def crl_trust(
    pki: DemoPKI, https: LocalHTTPServer, tls: TLSFiles
) -> AsyncIterator[TrustStore]:
    """Trust in the demo root, with the STI-PA CRL at the repository's /crl."""
    get = HTTPGet(verify=tls.root_pem)
    yield TrustStore(
        [pki.root.certificate],
        crl_urls=[https.url("/crl")],
        crl_signers=[pki.stipa.certificate],
        fetch=get,
    )
    await get.aclose()


async def test_crl_revocation_applies_to_a_cached_chain(
    fetcher: X5UFetcher, pki: DemoPKI, https: LocalHTTPServer, credential: tuple, clock: Clock
) -> None:
    trust = TrustStore([pki.root.certificate], crl_signers=[pki.stipa.certificate])
    service = make_service(fetcher, trust, clock)
    url = https.url("/chain.pem")
    assert (await service.verify([identity(credential[0], url, clock.now)], ORIG, DEST)).passed
    trust.add_crl("https://sti-pa.example/crl", pki.crl([credential[2]]))
    result = await service.verify([identity(credential[0], url, clock.now)], ORIG, DEST)
    assert (result.sip_code, result.result_class) == (437, ResultClass.REVOKED)
    assert chain_requests(https) == 1
    assert service.stats().revalidations == 1


async def test_a_due_crl_is_fetched_in_the_background(
    fetcher: X5UFetcher,
    pki: DemoPKI,
    https: LocalHTTPServer,
    credential: tuple,
    clock: Clock,
    crl_trust: TrustStore,
) -> None:
    https.routes["/crl"] = Route.body(
        pki.crl([credential[2]]).public_bytes(Encoding.PEM), content_type="application/pkix-crl"
    )
    service = make_service(fetcher, crl_trust, clock)
    url = https.url("/chain.pem")
    await service.verify([identity(credential[0], url, clock.now)], ORIG, DEST)
    await service.drain()
    assert https.requests.count("/crl") == 1
    assert not crl_trust.crl_due(clock.now)  # next due at the CRL's nextUpdate
    result = await service.verify([identity(credential[0], url, clock.now)], ORIG, DEST)
    assert result.result_class is ResultClass.REVOKED


async def test_a_crl_from_an_unknown_signer_is_refused(
    https: LocalHTTPServer, clock: Clock, crl_trust: TrustStore
) -> None:
    other = DemoPKI(dt.datetime.fromtimestamp(START, dt.UTC))
    https.routes["/crl"] = Route.body(other.crl([1]).public_bytes(Encoding.DER))
    version = crl_trust.version
    assert not await crl_trust.refresh_crls(clock.now)
    assert crl_trust.crl(https.url("/crl")) is None
    assert crl_trust.version == version
    assert not crl_trust.crl_due(clock.now + 299)
    assert crl_trust.crl_due(clock.now + 301)
    with pytest.raises(InvalidCertificate):
        crl_trust.add_crl("https://elsewhere/crl", other.crl([1]))


def test_crls_are_due_from_the_earliest_next_update(pki: DemoPKI) -> None:
    first, second = "https://sti-pa.example/crl/1", "https://sti-pa.example/crl/2"
    trust = TrustStore(
        [pki.root.certificate], crl_urls=[first, second], crl_signers=[pki.stipa.certificate]
    )
    assert trust.crl_due(START)
    trust.add_crl(first, pki.crl())
    assert trust.crl_due(START)  # the second one was never fetched
    later = issue_crl(pki.stipa, now=pki.now + dt.timedelta(hours=1))
    trust.add_crl(second, later)
    next_update = pki.crl().next_update_utc
    assert next_update is not None
    assert not trust.crl_due(next_update.timestamp() - 1)
    assert trust.crl_due(next_update.timestamp())


async def test_trust_list_refresh_from_a_file(
    fetcher: X5UFetcher,
    pki: DemoPKI,
    https: LocalHTTPServer,
    credential: tuple,
    clock: Clock,
    tmp_path: Path,
) -> None:
    now = dt.datetime.fromtimestamp(START, dt.UTC)
    stranger = issue_ca("SHAKEN ROOT elsewhere", organization="elsewhere", now=now)
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(to_pem([stranger.certificate]))
    trust = TrustStore(source=anchors)
    service = make_service(fetcher, trust, clock)
    url = https.url("/chain.pem")
    result = await service.verify([identity(credential[0], url, clock.now)], ORIG, DEST)
    assert (result.sip_code, result.result_class) == (437, ResultClass.CERT_CHAIN_ERROR)
    anchors.write_bytes(to_pem([stranger.certificate, pki.root.certificate]))
    await trust.refresh()
    assert (await service.verify([identity(credential[0], url, clock.now)], ORIG, DEST)).passed
    assert chain_requests(https) == 1


async def test_trust_list_from_a_url(
    fetcher: X5UFetcher, pki: DemoPKI, https: LocalHTTPServer, tls: TLSFiles, clock: Clock
) -> None:
    https.routes["/trust.pem"] = Route.body(pki.root.pem)
    get = HTTPGet(verify=tls.root_pem)
    trust = TrustStore(source=https.url("/trust.pem"), fetch=get)
    assert trust.context.anchors == ()
    await trust.refresh()
    assert trust.context.anchors == (pki.root.certificate,)
    await get.aclose()


async def test_warm_up_fetches_ahead_of_calls(
    service: VerificationService, https: LocalHTTPServer, credential: tuple, clock: Clock
) -> None:
    good, bad = https.url("/chain.pem"), https.url("/none.pem")
    assert await service.warm_up([good, bad, good]) == {good: True, bad: False}
    assert (await service.verify([identity(credential[0], good, clock.now)], ORIG, DEST)).passed
    assert chain_requests(https) == 1


async def test_deny_list_refuses_before_any_request(
    fetcher: X5UFetcher, pki: DemoPKI, https: LocalHTTPServer, credential: tuple, clock: Clock
) -> None:
    service = make_service(
        fetcher, TrustStore([pki.root.certificate]), clock, x5u_deny=("127.0.0.*",)
    )
    url = https.url("/chain.pem")
    result = await service.verify([identity(credential[0], url, clock.now)], ORIG, DEST)
    assert result.sip_code == 436
    assert "deny list" in result.reason
    assert https.requests == []


async def test_cheap_checks_run_before_any_fetch(
    service: VerificationService, https: LocalHTTPServer, credential: tuple, clock: Clock
) -> None:
    url = https.url("/chain.pem")
    stale = await service.verify([identity(credential[0], url, clock.now - 61)], ORIG, DEST)
    wrong_to = await service.verify([identity(credential[0], url, clock.now)], ORIG, "12125550000")
    assert (stale.sip_code, wrong_to.sip_code) == (403, 438)
    assert wrong_to.result_class is ResultClass.CALLED_NUMBER_MISMATCH
    assert https.requests == []


async def test_date_header_is_checked_only_when_present_and_asked(
    fetcher: X5UFetcher, pki: DemoPKI, https: LocalHTTPServer, credential: tuple, clock: Clock
) -> None:
    trust = TrustStore([pki.root.certificate])
    strict = make_service(fetcher, trust, clock, check_date=True)
    lenient = make_service(fetcher, trust, clock)
    token = identity(credential[0], https.url("/chain.pem"), clock.now)
    old_date = "Mon, 01 Jan 2024 00:00:00 GMT"
    assert (await strict.verify([token], ORIG, DEST)).passed
    assert (await strict.verify([token], ORIG, DEST, date=int(clock.now))).passed
    stale = await strict.verify([token], ORIG, DEST, date=old_date)
    assert (stale.sip_code, stale.result_class) == (403, ResultClass.INVALID_IAT)
    assert (await lenient.verify([token], ORIG, DEST, date=old_date)).passed


async def test_numbers_that_are_not_tns_give_no_validation(
    service: VerificationService, credential: tuple, clock: Clock
) -> None:
    token = identity(credential[0], "https://127.0.0.1:1/x.pem", clock.now)
    result = await service.verify([token], "sip:anonymous@example.net", DEST)
    assert (result.verstat, result.sip_code) == (Verstat.NO_VALIDATION, None)
    assert (await service.verify([], ORIG, DEST)).sip_code == 428


async def test_verify_cached_answers_only_from_the_cache(
    service: VerificationService, https: LocalHTTPServer, credential: tuple, clock: Clock
) -> None:
    url = https.url("/chain.pem")
    https.routes["/chain.pem"] = Route.body(
        credential[1], headers=(("Cache-Control", "max-age=60"),)
    )
    headers = [identity(credential[0], url, clock.now)]
    assert service.verify_cached(headers, ORIG, [DEST]) is None  # it would have to fetch
    assert (chain_requests(https), service.cache_info().misses) == (0, 0)
    fetched = await service.verify(headers, ORIG, [DEST])
    cached = service.verify_cached(headers, ORIG, [DEST])
    assert cached == fetched
    assert cached.passed
    wrong = service.verify_cached(headers, ORIG, ["12155550199"])  # before any lookup
    assert wrong is not None
    assert wrong.sip_code == 438
    # Checks that need no credential answer at once, cache or not.
    early = service.verify_cached(headers, "not a number", [DEST])
    assert early is not None
    assert early.result_class is ResultClass.INVALID_ORIG
    clock.now += 61  # the entry expired: a fetch is needed again
    assert service.verify_cached([identity(credential[0], url, clock.now)], ORIG, DEST) is None
    assert chain_requests(https) == 1
    assert (service.cache_info().hits, service.cache_info().misses) == (1, 1)


async def test_trust_list_skips_what_it_cannot_use_and_keeps_the_last_good_copy(
    pki: DemoPKI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = b"-----BEGIN CERTIFICATE-----\nMIIB!!\n-----END CERTIFICATE-----\n"
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(broken + pki.root.pem)
    with caplog.at_level(logging.WARNING, logger="opensti.verification._trust"):
        trust = TrustStore(source=anchors)
    assert trust.context.anchors == (pki.root.certificate,)
    assert (trust.anchors_loaded, len(trust.anchors_skipped)) == (1, 1)
    assert [r.getMessage() for r in caplog.records] == [
        f"trust anchor skipped: unreadable subject in {anchors}: a PEM block that is not base64"
    ]
    anchors.write_bytes(b"not a certificate at all")
    with pytest.raises(InvalidCertificate, match="no usable trust anchor"):
        await trust.refresh()
    assert trust.context.anchors == (pki.root.certificate,)
    assert trust.anchors_loaded == 1


async def test_trust_list_url_keeps_the_last_good_copy(
    pki: DemoPKI, https: LocalHTTPServer, tls: TLSFiles
) -> None:
    """The STI-PA's published list: a bad block is skipped, a failed download keeps the
    list in force."""
    broken = b"-----BEGIN CERTIFICATE-----\nMIIB!!\n-----END CERTIFICATE-----\n"
    https.routes["/ca-list.pem"] = Route.body(pki.root.pem + broken)
    get = HTTPGet(verify=tls.root_pem)
    trust = TrustStore(source=https.url("/ca-list.pem"), fetch=get)
    await trust.refresh()
    assert trust.context.anchors == (pki.root.certificate,)
    assert len(trust.anchors_skipped) == 1
    https.routes["/ca-list.pem"] = Route(status=503)
    with pytest.raises(UpstreamError, match="503"):
        await trust.refresh()
    assert trust.context.anchors == (pki.root.certificate,)
    await get.aclose()
