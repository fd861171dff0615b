"""CA profiles, validity, restart persistence, fault injection and admin access."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from cryptography import x509

from opensti.sandbox.config import PROFILES, CAProfile
from opensti.sandbox.server import SandboxHandle
from tests.sandbox.acme_support import (
    ACMETestClient,
    STIPATestClient,
    jwk_fingerprint,
    make_csr,
    new_key,
    spki_fingerprint,
)
from tests.sandbox.conftest import SandboxFactory
from tests.sandbox.test_acme import problem

pytestmark = pytest.mark.integration


class Parties:
    def __init__(self, handle: SandboxHandle, *, eab: bool = True) -> None:
        self.handle = handle
        self.acme = ACMETestClient(handle)
        self.stipa = STIPATestClient(handle)
        response = self.acme.register(handle.state.add_eab() if eab else None)
        assert response.status_code == 201, response.text

    def token(self, spc: str = "123H", *, padded: bool = True, spki: bool = False) -> str:
        key = self.acme.key
        fingerprint = spki_fingerprint(key) if spki else jwk_fingerprint(key)
        return self.stipa.spc_token(spc, fingerprint, padded=padded)

    def ready_order(self, token: str, *, padded: bool = True, field: str = "atc") -> dict[str, Any]:
        order = self.acme.new_order("123H", padded=padded).json()
        answer = self.acme.answer(order, token, field)
        assert answer.json()["status"] == "valid", answer.text
        return order

    def close(self) -> None:
        self.acme.close()
        self.stipa.close()


PartiesFactory = Callable[..., Parties]


@pytest.fixture
def parties(sandbox_factory: SandboxFactory) -> Iterator[PartiesFactory]:
    made: list[Parties] = []

    def make(profile: CAProfile, **options: object) -> Parties:
        made.append(Parties(sandbox_factory(profile=profile, **options), eab=profile.eab_required))
        return made[-1]

    yield make
    for p in made:
        p.close()


def test_rfc9448_profile_wants_base64url_and_the_tkauth_field(parties: PartiesFactory) -> None:
    p = parties(PROFILES["rfc9448"])
    assert p.acme.directory["meta"]["profile"] == "rfc9448"
    problem(p.acme.new_order("123H", padded=True), "rejectedIdentifier")
    token = p.token(padded=False)
    order = p.acme.new_order("123H", padded=False).json()
    problem(p.acme.answer(order, token, "atc"), "malformed")
    assert p.acme.answer(order, token, "tkauth").json()["status"] == "valid"


def test_padded_profile_refuses_a_base64url_token(parties: PartiesFactory) -> None:
    p = parties(PROFILES["atis"])
    order = p.acme.new_order("123H").json()
    answer = p.acme.answer(order, p.token(padded=False)).json()
    assert answer["status"] == "invalid"
    assert "encoding" in answer["error"]["detail"]


def test_peeringhub_profile_needs_the_account_key_in_the_csr(parties: PartiesFactory) -> None:
    p = parties(PROFILES["peeringhub"].with_options(eab_required=False))
    order = p.ready_order(p.token(spki=True))
    body = problem(p.acme.post(order["finalize"], {"csr": make_csr(new_key(), "123H")}), "badCSR")
    assert "account key" in body["detail"]
    final = p.acme.post(order["finalize"], {"csr": make_csr(p.acme.key, "123H")})
    assert final.json()["status"] == "valid"


def test_separate_key_profile_refuses_the_account_key(parties: PartiesFactory) -> None:
    p = parties(CAProfile(cert_key="separate"))
    order = p.ready_order(p.token())
    problem(p.acme.post(order["finalize"], {"csr": make_csr(p.acme.key, "123H")}), "badCSR")


def test_atis_profile_allows_either_key(parties: PartiesFactory) -> None:
    p = parties(PROFILES["atis"])
    order = p.ready_order(p.token())
    final = p.acme.post(order["finalize"], {"csr": make_csr(p.acme.key, "123H")})
    assert final.json()["status"] == "valid"


def test_eab_optional_profile(parties: PartiesFactory) -> None:
    p = parties(CAProfile(eab_required=False))
    assert p.acme.directory["meta"]["externalAccountRequired"] is False


def test_spki_fingerprint_profile(parties: PartiesFactory) -> None:
    p = parties(CAProfile(fingerprint="spki_sha256"))
    order = p.acme.new_order("123H").json()
    assert p.acme.answer(order, p.token()).json()["status"] == "invalid"
    p.ready_order(p.token(spki=True))


def _leaf(p: Parties, order: dict[str, Any]) -> x509.Certificate:
    final = p.acme.post(order["finalize"], {"csr": make_csr(new_key(), "123H")}).json()
    return x509.load_pem_x509_certificates(p.acme.post(final["certificate"]).content)[0]


def _requested_window() -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    return start, start + dt.timedelta(days=2)


@pytest.mark.parametrize("honour", [True, False])
def test_not_before_and_not_after(parties: PartiesFactory, honour: bool) -> None:
    p = parties(CAProfile(honour_validity=honour), cert_validity=dt.timedelta(minutes=2))
    start, end = _requested_window()
    window = {"notBefore": start.isoformat(), "notAfter": end.isoformat()}
    order = p.acme.new_order("123H", **window).json()
    assert p.acme.answer(order, p.token()).json()["status"] == "valid"
    leaf = _leaf(p, order)
    if honour:
        assert (leaf.not_valid_before_utc, leaf.not_valid_after_utc) == (start, end)
    else:
        assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(minutes=2)


def test_inverted_validity_window_is_malformed(parties: PartiesFactory) -> None:
    p = parties(PROFILES["atis"])
    start, end = _requested_window()
    response = p.acme.new_order("123H", notBefore=end.isoformat(), notAfter=start.isoformat())
    problem(response, "malformed")


# Restart persistence


def test_restart_keeps_accounts_certificates_pki_and_eab(sandbox_factory: SandboxFactory) -> None:
    first = sandbox_factory()
    data_dir = first.state.config.data_dir
    p = Parties(first)
    order = p.ready_order(p.token())
    leaf = _leaf(p, order)
    unused_kid, unused_key = first.state.add_eab()
    root = first.trust_anchors[0]
    account_id = p.acme.kid.rsplit("/", 1)[1]  # type: ignore[union-attr]
    p.close()
    first.stop()

    second = sandbox_factory(data_dir=data_dir)
    assert second.trust_anchors[0] == root
    again = ACMETestClient(second, key=p.acme.key)
    found = again.post(again.directory["newAccount"], {"onlyReturnExisting": True}, use_jwk=True)
    assert found.headers["Location"].rsplit("/", 1)[1] == account_id
    again.kid = found.headers["Location"]
    orders = again.post(again.post(again.kid).json()["orders"]).json()["orders"]
    cert_url = again.post(orders[0]).json()["certificate"]
    assert x509.load_pem_x509_certificates(again.post(cert_url).content)[0] == leaf
    newcomer = ACMETestClient(second)
    assert newcomer.register((unused_kid, unused_key)).status_code == 201
    assert STIPATestClient(second).login().status_code == 200
    again.close()
    newcomer.close()


# Fault injection and admin access


def test_refused_ca_answers_503_problem_until_switched_back(sandbox: SandboxHandle) -> None:
    client = ACMETestClient(sandbox)
    admin = httpx.Client(base_url=sandbox.base_url, verify=sandbox.verify, trust_env=False)
    assert admin.post("/admin/faults", json={"role": "ca", "mode": "refuse"}).status_code == 200
    refused = client.http.get(sandbox.ca_directory_url)
    problem(refused, "serverInternal", 503)
    assert refused.headers["Retry-After"] == "1"
    assert STIPATestClient(sandbox).login().status_code == 200  # the STI-PA is unaffected
    admin.post("/admin/faults", json={"role": "ca", "mode": "ok"})
    assert client.http.get(sandbox.ca_directory_url).status_code == 200
    admin.close()
    client.close()


def test_refused_stipa_answers_503_json(sandbox: SandboxHandle) -> None:
    sandbox.state.faults.set("stipa", "refuse")
    stipa = STIPATestClient(sandbox)
    response = stipa.login()
    assert response.status_code == 503
    assert response.json()["status"] == "error"
    stipa.close()


def test_delayed_requests_are_still_served(sandbox: SandboxHandle) -> None:
    sandbox.state.faults.set("ca", "delay", 0.2)
    client = ACMETestClient(sandbox)
    assert client.directory["newNonce"]
    client.close()


def test_fail_rate_one_refuses_everything(sandbox_factory: SandboxFactory) -> None:
    handle = sandbox_factory(fail_rate=1.0)
    http = httpx.Client(verify=handle.verify, trust_env=False)
    assert http.get(handle.ca_directory_url).status_code == 503
    assert http.get(handle.stipa_base_url + "/api/v1/ca-list").status_code == 503
    faults = http.get(handle.base_url + "/admin/faults").json()
    assert faults["fail_rate"] == 1.0
    http.close()


def test_admin_token_protects_admin_endpoints(sandbox_factory: SandboxFactory) -> None:
    handle = sandbox_factory(admin_token="s3cret", http=True)
    assert handle.base_url.startswith("http://")
    http = httpx.Client(base_url=handle.base_url, trust_env=False)
    assert http.post("/admin/eab").status_code == 401
    created = http.post("/admin/eab", headers={"Authorization": "Bearer s3cret"})
    assert created.status_code == 200
    assert set(created.json()) == {"kid", "hmac_key"}
    http.close()
