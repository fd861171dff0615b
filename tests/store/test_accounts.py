"""CAs, ACME accounts and STI-PA accounts: creation, lookups, limits, refusals."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from opensti.core.errors import Conflict, InvalidInput, InvalidKey, NotFound
from opensti.store import (
    AccountOrigin,
    CAKind,
    CertificateAuthority,
    Secret,
    StiPaEnvironment,
    create_acme_account,
    get_acme_account,
    get_ca,
    get_stipa_account,
    list_acme_accounts,
    list_cas,
    list_stipa_accounts,
    set_stipa_account,
    stipa_password,
)

from .conftest import add_account, add_ca, key_pem, row_counts

pytestmark = pytest.mark.db_dialect

EAB_KEY = Secret(b"zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_create_get_and_list_cas(db) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        add_ca(session, "zeta", needs_eab=True, kind=CAKind.KNOWN, identifier_encoding="base64url")
        add_ca(session, "alpha", tkauth_field="tkauth", cert_key_is_account_key=True)
    with db.read_session() as session:
        assert [ca.name for ca in list_cas(session)] == ["alpha", "zeta"]
        zeta = get_ca(session, "zeta")
        assert (zeta.needs_eab, zeta.kind, zeta.identifier_encoding) == (True, "known", "base64url")
        assert get_ca(session, "alpha").tkauth_field == "tkauth"
        assert zeta.created_at.tzinfo is not None
        with pytest.raises(NotFound, match="no CA with name 'nope'"):
            get_ca(session, "nope")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "bad name"}, "CA name 'bad name' is not valid"),
        ({"name": "x" * 65}, "is not valid"),
        ({"directory_url": "ftp://ca/dir"}, "directory URL 'ftp://ca/dir' is not an http"),
        ({"terms_url": "tos"}, "terms of service URL"),
        ({"identifier_encoding": "hex"}, "identifier encoding 'hex' is not one of"),
        ({"tkauth_field": "token"}, "tkauth-01 field"),
        ({"fingerprint_algorithm": "md5"}, "fingerprint algorithm"),
    ],
)
def test_invalid_ca_is_refused_and_nothing_stored(db, options, message) -> None:  # type: ignore[no-untyped-def]
    before = row_counts(db)
    with pytest.raises(InvalidInput, match=message), db.session() as session:
        add_ca(session, **options)
    assert row_counts(db) == before


def test_duplicate_ca_name_is_a_conflict(db) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        add_ca(session)
    with (
        pytest.raises(Conflict, match="CA with name 'sandbox' already exists"),
        db.session() as s,
    ):
        add_ca(s)
    assert row_counts(db)["certificate_authority"] == 1


def test_unique_constraint_holds_without_the_precheck(db) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        add_ca(session)
    row = {"name": "sandbox", "directory_url": "https://x.test/d", "kind": "custom"}
    with (
        pytest.raises(IntegrityError, match=r"(?i)unique constraint"),
        db.engine.begin() as connection,
    ):
        connection.execute(insert(CertificateAuthority), [row])


def test_create_account_computes_the_rfc7638_thumbprint(db, box) -> None:  # type: ignore[no-untyped-def]
    key = key_pem()
    with db.session() as session:
        add_ca(session)
        create_acme_account(
            session,
            box,
            name="prod",
            ca="sandbox",
            key_pem=key,
            email="noc@carrier.example",
            tos_agreed=True,
        )
    numbers = load_pem_private_key(key.reveal(), None).public_key().public_numbers()  # type: ignore[union-attr]
    jwk = {
        "crv": "P-256",
        "kty": "EC",
        "x": _b64(numbers.x.to_bytes(32, "big")),
        "y": _b64(numbers.y.to_bytes(32, "big")),
    }
    expected = _b64(hashlib.sha256(json.dumps(jwk, separators=(",", ":")).encode()).digest())
    with db.read_session() as session:
        account = get_acme_account(session, "prod")
        assert account.thumbprint == expected
        assert (account.email, account.tos_agreed, account.status) == (
            "noc@carrier.example",
            True,
            "pending",
        )
        assert account.ca.name == "sandbox"
        assert [a.name for a in list_acme_accounts(session)] == ["prod"]
        assert "ciphertext" not in repr(account)


def test_imported_account_needs_no_eab_and_keeps_its_url(db, box) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        add_ca(session, needs_eab=True)
        create_acme_account(
            session,
            box,
            name="old",
            ca="sandbox",
            key_pem=key_pem(),
            account_url="https://ca.example.test/acct/17",
            origin=AccountOrigin.IMPORTED,
            status="valid",
        )
    with (
        pytest.raises(Conflict, match=r"ACME account with account url .* already exists"),
        db.session() as session,
    ):
        create_acme_account(
            session,
            box,
            name="again",
            ca="sandbox",
            key_pem=key_pem(),
            account_url="https://ca.example.test/acct/17",
            origin=AccountOrigin.IMPORTED,
        )


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"ca": "unknown"}, NotFound, "no CA with name 'unknown'"),
        ({"email": "not-an-email"}, InvalidInput, "'not-an-email' is not an email address"),
        ({"staging": True, "ca": "nostaging"}, InvalidInput, "has no staging directory"),
        ({"ca": "eab"}, InvalidInput, "requires external account binding"),
        ({"eab_kid": "kid"}, InvalidInput, "give both the EAB key id and the EAB HMAC key"),
        (
            {"ca": "eab", "eab_kid": "kid", "eab_hmac_key": Secret(b"not base64url!")},
            InvalidInput,
            "EAB HMAC key is not base64url",
        ),
        (
            {"ca": "eab", "eab_kid": "kid", "eab_hmac_key": Secret(b"abc+/def")},
            InvalidInput,
            "EAB HMAC key is not base64url",
        ),
        ({"key_pem": Secret(b"garbage")}, InvalidKey, "not a PEM private key"),
        ({"name": "acct"}, Conflict, "ACME account with name 'acct' already exists"),
    ],
)
def test_bad_account_input_is_refused_and_nothing_stored(db, box, options, error, message) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        add_ca(session)
        add_ca(session, "eab", needs_eab=True)
        add_ca(session, "nostaging", staging_directory_url=None)
        add_account(session, box, "acct")
    before = row_counts(db)
    arguments = {"name": "new", "ca": "sandbox", "key_pem": key_pem(), **options}
    with pytest.raises(error, match=message), db.session() as session:
        create_acme_account(session, box, **arguments)
    assert row_counts(db) == before


def test_eab_key_with_padding_is_accepted(db, box) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        add_ca(session, needs_eab=True)
        account = create_acme_account(
            session,
            box,
            name="a",
            ca="sandbox",
            key_pem=key_pem(),
            eab_kid="k",
            eab_hmac_key=Secret(b"YWJjZA=="),
        )
        assert account.eab_kid == "k"


def test_ca_with_accounts_cannot_be_deleted(db, box) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        add_ca(session)
        add_account(session, box)
    with (
        pytest.raises(IntegrityError, match=r"(?i)foreign key constraint"),
        db.session() as session,
    ):
        session.execute(delete(CertificateAuthority))


PRINTABLE_PASSWORD = "p@ss w0rd'\"<>&;\\$`|%é" + "x" * 100


def test_stipa_account_set_then_replaced(db, box) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        set_stipa_account(
            session, box, account_id="281k", user_id="u1", password=Secret.from_text("first")
        )
        set_stipa_account(
            session,
            box,
            account_id="281K",
            user_id="user two",
            password=Secret.from_text(PRINTABLE_PASSWORD),
            base_url="https://sti-pa.example.test",
        )
        set_stipa_account(
            session,
            box,
            account_id="281K",
            user_id="staging-user",
            password=Secret.from_text("s"),
            environment=StiPaEnvironment.STAGING,
        )
    with db.read_session() as session:
        accounts = list_stipa_accounts(session)
        assert [(a.account_id, a.environment) for a in accounts] == [
            ("281K", "production"),
            ("281K", "staging"),
        ]
        production = get_stipa_account(session, "281K")
        assert production.user_id == "user two"
        assert production.base_url == "https://sti-pa.example.test"
        assert stipa_password(box, production).reveal_text() == PRINTABLE_PASSWORD
        with pytest.raises(NotFound):
            get_stipa_account(session, "999Z")


@pytest.mark.parametrize(
    ("user_id", "password", "message"),
    [
        ("u" * 255, "p" * 189, None),
        ("u" * 256, "p", "STI-PA user id has 256 characters: at most 255"),
        ("u", "p" * 190, "STI-PA password has 190 characters: at most 189"),
        ("", "p", "STI-PA user id is empty"),
        ("u", "", "STI-PA password is empty"),
        ("u\n", "p", "user id contains a control character"),
        ("u", "p\x00", "password contains a control character"),
    ],
)
def test_stipa_limits(db, box, user_id, password, message) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        set_stipa_account(session, box, account_id="281K", user_id="orig", password=Secret(b"old"))
    secret = Secret.from_text(password)
    with db.session() as session:
        if message is None:
            set_stipa_account(session, box, account_id="281K", user_id=user_id, password=secret)
        else:
            with pytest.raises(InvalidInput, match=message):
                set_stipa_account(session, box, account_id="281K", user_id=user_id, password=secret)
    with db.read_session() as session:
        stored = get_stipa_account(session, "281K")
        expected = (user_id, password) if message is None else ("orig", "old")
        assert (stored.user_id, stipa_password(box, stored).reveal_text()) == expected


@pytest.mark.parametrize("account_id", ["28", "281KK", "28-K", ""])
def test_stipa_account_id_must_be_an_ocn(db, box, account_id) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="expected an OCN"), db.session() as session:
        set_stipa_account(session, box, account_id=account_id, user_id="u", password=Secret(b"p"))
    assert row_counts(db)["stipa_account"] == 0


def test_a_refused_password_is_not_echoed(db, box) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput) as raised, db.session() as session:
        set_stipa_account(
            session, box, account_id="281K", user_id="u", password=Secret(b"Sekr1t-value\x07")
        )
    assert "Sekr1t" not in str(raised.value)
