"""SigningService: entry choice, refusals, and the keyring swap under concurrent signing."""

from __future__ import annotations

import threading

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from opensti.core.errors import (
    InvalidInput,
    InvalidTN,
    NoActiveCertificate,
    NoSigningEntry,
    http_status,
    sip_service_response,
)
from opensti.core.identity import parse_identity
from opensti.core.passport import ShakenClaims, decode_passport, shaken_claims, verify_signature
from opensti.sandbox.pki import new_key
from opensti.signing import CallSignerAdapter, Keyring, SigningEntry, SigningService

NOW = 1_740_830_400


def entry(name: str, **options: object) -> SigningEntry:
    key = options.pop("key", new_key())
    x5u = options.pop("x5u", f"https://cr.example.net/{name}.pem")
    return SigningEntry(name=name, spc=name.upper(), key=key, x5u=x5u, **options)  # type: ignore[arg-type]


def check(identity: str, key: ec.EllipticCurvePrivateKey) -> tuple[str, ShakenClaims]:
    """Verify the signature with ``key``; return the info URL (checked equal to x5u) and claims."""
    header = parse_identity(identity)
    passport = decode_passport(header.token)
    verify_signature(passport, key.public_key())
    assert passport.x5u == header.info
    return header.info, shaken_claims(passport)


@pytest.fixture
def keys() -> dict[str, ec.EllipticCurvePrivateKey]:
    return {name: new_key() for name in ("east", "east-ny", "fallback")}


@pytest.fixture
def service(keys: dict[str, ec.EllipticCurvePrivateKey]) -> SigningService:
    keyring = Keyring(
        [
            entry("east", key=keys["east"], prefixes=("1212",), attest="A"),
            entry("east-ny", key=keys["east-ny"], prefixes=("+1 212 555",), attest="B"),
            entry("fallback", key=keys["fallback"], is_default=True),
        ]
    )
    return SigningService(keyring, clock=lambda: NOW)


def test_longest_prefix_wins(
    service: SigningService, keys: dict[str, ec.EllipticCurvePrivateKey]
) -> None:
    signed = service.sign("+1 212 555 0100", ["12155550131"])
    assert signed.entry == "east-ny"
    info, claims = check(signed.identity, keys["east-ny"])
    assert info == "https://cr.example.net/east-ny.pem"
    assert claims.orig == "12125550100"
    assert claims.dest == ("12155550131",)
    assert claims.attest == "B"
    assert claims.iat == NOW
    assert service.sign("12126660100", "12155550131").entry == "east"


def test_default_entry_and_request_attestation(
    service: SigningService, keys: dict[str, ec.EllipticCurvePrivateKey]
) -> None:
    signed = service.sign("tel:+13035550100", "sip:+12155550131@example.net", attest="A")
    assert signed.entry == "fallback"
    assert signed.claims.attest == "A"
    assert signed.claims.dest == ("12155550131",)
    check(signed.identity, keys["fallback"])


def test_explicit_entry_overrides_the_prefix_rules(
    service: SigningService, keys: dict[str, ec.EllipticCurvePrivateKey]
) -> None:
    signed = service.sign(
        "12125550100", ["12155550131"], entry="fallback", origid="abc", now=NOW - 7
    )
    assert signed.entry == "fallback"
    assert signed.claims.origid == "abc"
    assert signed.claims.iat == NOW - 7
    check(signed.identity, keys["fallback"])
    with pytest.raises(NoSigningEntry):
        service.sign("12125550100", ["12155550131"], entry="nope")


def test_no_covering_entry_is_refused_with_a_500_class_sip_code() -> None:
    service = SigningService(Keyring([entry("east", prefixes=("1212",))]))
    with pytest.raises(NoSigningEntry) as caught:
        service.sign("13035550100", ["12155550131"])
    assert sip_service_response(caught.value)[0] == 500
    assert http_status(caught.value) == 404


def test_entry_without_active_certificate_refuses_rather_than_falls_through() -> None:
    keyring = Keyring(
        [
            SigningEntry(name="pending", spc="P1", prefixes=("1212",)),
            entry("fallback", is_default=True),
        ]
    )
    with pytest.raises(NoActiveCertificate) as caught:
        SigningService(keyring).sign("12125550100", ["12155550131"])
    assert sip_service_response(caught.value) == (500, "No Active Certificate")
    assert http_status(caught.value) == 409


@pytest.mark.parametrize(
    ("orig", "dest", "attest", "error"),
    [
        ("not a number", ["12155550131"], None, InvalidTN),
        ("12125550100", [], None, InvalidInput),
        ("12125550100", ["12155550131"], "D", InvalidInput),
    ],
)
def test_bad_requests_are_invalid_input(
    service: SigningService, orig: str, dest: list[str], attest: str | None, error: type
) -> None:
    with pytest.raises(error):
        service.sign(orig, dest, attest=attest)


def test_bad_entry_sets_are_refused_and_the_old_set_stays() -> None:
    keyring = Keyring([entry("a", is_default=True)])
    with pytest.raises(InvalidInput):
        keyring.replace([entry("a", is_default=True), entry("b", is_default=True)])
    with pytest.raises(InvalidInput):
        keyring.replace([entry("a", prefixes=("1",)), entry("b", prefixes=("+1",))])
    with pytest.raises(InvalidInput):
        SigningEntry(name="half", spc="H", key=new_key())
    assert [e.name for e in keyring.snapshot.entries] == ["a"]
    assert keyring.generation == 0


def test_private_keys_stay_out_of_reprs() -> None:
    assert "key=" not in repr(entry("a"))


def test_upsert_activates_a_new_certificate_for_one_entry() -> None:
    keyring = Keyring([SigningEntry(name="a", spc="A1", is_default=True), entry("b")])
    service = SigningService(keyring)
    with pytest.raises(NoActiveCertificate):
        service.sign("12125550100", ["12155550131"])
    key = new_key()
    keyring.upsert(entry("a", key=key, is_default=True, certificate_id="cert-2"))
    signed = service.sign("12125550100", ["12155550131"])
    assert (signed.entry, signed.certificate_id) == ("a", "cert-2")
    check(signed.identity, key)
    assert sorted(e.name for e in keyring.snapshot.entries) == ["a", "b"]


def test_call_signer_adapter_returns_the_identity_value(
    service: SigningService, keys: dict[str, ec.EllipticCurvePrivateKey]
) -> None:
    identity = CallSignerAdapter(service).sign("12126660100", ["12155550131"], None, "call-1")
    assert check(identity, keys["east"])[0] == "https://cr.example.net/east.pem"


def test_the_sip_signer_signs_its_canonical_numbers_as_they_are(
    service: SigningService, keys: dict[str, ec.EllipticCurvePrivateKey]
) -> None:
    """The SIP layer has applied its own NANP rule (here: none), so ten digits stay ten:
    the verifier, which reads the same signalling, must find the same orig and dest."""
    adapter = CallSignerAdapter(service)
    signed = adapter.sign_call("2125550100", ["2155550131"], None, "call-1")
    assert (signed.claims.orig, signed.claims.dest) == ("2125550100", ("2155550131",))
    assert check(signed.identity, keys["fallback"])[1].orig == "2125550100"
    div = adapter.sign_div("2125550100", ["2155550199"], "2155550131", "call-1")
    assert (div.claims.orig, div.claims.div) == ("2125550100", "2155550131")
    # The REST API's numbers are not canonical yet: the NANP rule applies to them.
    assert service.sign("2125550100", ["2155550131"]).claims.dest == ("12155550131",)


def test_swap_under_concurrent_signing_never_mixes_key_and_x5u() -> None:
    """Every identity signed during swaps verifies with the key its own x5u names."""
    generations = [(new_key(), f"https://cr.example.net/gen{i}.pem") for i in range(4)]
    key_of = {x5u: key for key, x5u in generations}
    keyring = Keyring([entry("a", key=generations[0][0], x5u=generations[0][1], is_default=True)])
    service = SigningService(keyring)
    stop = threading.Event()
    results: list[str] = []
    errors: list[BaseException] = []

    def sign_loop() -> None:
        try:
            while not stop.is_set():
                results.append(service.sign("12125550100", ["12155550131"]).identity)
        except BaseException as exc:  # the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=sign_loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    for round_ in range(40):
        key, x5u = generations[round_ % len(generations)]
        keyring.replace([entry("a", key=key, x5u=x5u, is_default=True)])
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors
    assert keyring.generation == 40
    assert results
    for identity in results:
        info = parse_identity(identity).info
        check(identity, key_of[info])
