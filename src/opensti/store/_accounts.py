"""Certificate authorities, ACME accounts and STI-PA accounts."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from josepy.jwk import JWKEC
from sqlalchemy import select
from sqlalchemy.orm import Session

from opensti.core.errors import InvalidInput
from opensti.core.passport import load_private_key
from opensti.store._common import add, ensure_absent, get_by
from opensti.store._models import (
    AccountOrigin,
    AcmeAccount,
    CAKind,
    CertificateAuthority,
    StiPaAccount,
    StiPaEnvironment,
)
from opensti.store._secrets import Secret, SecretBox
from opensti.store._validate import (
    check_eab_hmac_key,
    check_email,
    check_name,
    check_spc,
    check_stipa_password,
    check_stipa_user_id,
    check_url,
)

__all__ = [
    "ACCOUNT_KEY",
    "EAB_HMAC_KEY",
    "STIPA_PASSWORD",
    "acme_account_eab_hmac_key",
    "acme_account_key",
    "create_acme_account",
    "create_ca",
    "get_acme_account",
    "get_ca",
    "get_stipa_account",
    "jwk_thumbprint",
    "list_acme_accounts",
    "list_cas",
    "list_stipa_accounts",
    "set_stipa_account",
    "stipa_password",
]

# Associated data binding each ciphertext to its column.
ACCOUNT_KEY = "acme_account.key"
EAB_HMAC_KEY = "acme_account.eab_hmac_key"
STIPA_PASSWORD = "stipa_account.password"  # noqa: S105  (a label, not a secret)

_IDENTIFIER_ENCODINGS = ("base64", "base64url")
_TKAUTH_FIELDS = ("atc", "tkauth")
_FINGERPRINT_ALGORITHMS = ("jwk_thumbprint", "spki_sha256")


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise InvalidInput(f"{what} {value!r} is not one of {', '.join(choices)}", value=value)
    return value


def create_ca(
    session: Session,
    *,
    name: str,
    directory_url: str,
    staging_directory_url: str | None = None,
    needs_eab: bool = False,
    terms_url: str | None = None,
    kind: CAKind = CAKind.CUSTOM,
    identifier_encoding: str = "base64",
    tkauth_field: str = "atc",
    fingerprint_algorithm: str = "jwk_thumbprint",
    cert_key_is_account_key: bool = False,
    honours_validity: bool = False,
) -> CertificateAuthority:
    ca = CertificateAuthority(
        name=check_name(name, "CA"),
        kind=kind,
        directory_url=check_url(directory_url, "directory URL"),
        staging_directory_url=staging_directory_url
        and check_url(staging_directory_url, "staging directory URL"),
        needs_eab=needs_eab,
        terms_url=terms_url and check_url(terms_url, "terms of service URL"),
        identifier_encoding=_check_choice(
            identifier_encoding, _IDENTIFIER_ENCODINGS, "identifier encoding"
        ),
        tkauth_field=_check_choice(tkauth_field, _TKAUTH_FIELDS, "tkauth-01 field"),
        fingerprint_algorithm=_check_choice(
            fingerprint_algorithm, _FINGERPRINT_ALGORITHMS, "fingerprint algorithm"
        ),
        cert_key_is_account_key=cert_key_is_account_key,
        honours_validity=honours_validity,
    )
    ensure_absent(session, CertificateAuthority, "CA", name=name)
    return add(session, ca, "CA")


def get_ca(session: Session, name: str) -> CertificateAuthority:
    return get_by(session, CertificateAuthority, "CA", name=name)


def list_cas(session: Session) -> Sequence[CertificateAuthority]:
    return session.scalars(select(CertificateAuthority).order_by(CertificateAuthority.name)).all()


def jwk_thumbprint(key_pem: Secret) -> str:
    """RFC 7638 SHA-256 thumbprint of the key's public half, base64url without padding."""
    public = load_private_key(key_pem.reveal()).public_key()
    digest = JWKEC(key=public).thumbprint()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def create_acme_account(
    session: Session,
    box: SecretBox,
    *,
    name: str,
    ca: str,
    key_pem: Secret,
    staging: bool = False,
    email: str | None = None,
    account_url: str | None = None,
    eab_kid: str | None = None,
    eab_hmac_key: Secret | None = None,
    tos_agreed: bool = False,
    origin: AccountOrigin = AccountOrigin.CREATED,
    status: str = "pending",
) -> AcmeAccount:
    """Store an account (before or after registering it with the CA: see ``status``)."""
    check_name(name, "account")
    authority = get_ca(session, ca)
    if staging and not authority.staging_directory_url:
        raise InvalidInput(f"CA {ca!r} has no staging directory")
    if (eab_kid is None) != (eab_hmac_key is None):
        raise InvalidInput("give both the EAB key id and the EAB HMAC key, or neither")
    if authority.needs_eab and origin is AccountOrigin.CREATED and eab_kid is None:
        raise InvalidInput(
            f"CA {ca!r} requires external account binding: give the EAB key id and HMAC key"
        )
    account = AcmeAccount(
        name=name,
        ca_id=authority.id,
        staging=staging,
        email=email and check_email(email),
        account_url=account_url and check_url(account_url, "account URL"),
        thumbprint=jwk_thumbprint(key_pem),
        key_ciphertext=box.seal(key_pem, ACCOUNT_KEY),
        eab_kid=eab_kid,
        eab_hmac_key_ciphertext=eab_hmac_key
        and box.seal(check_eab_hmac_key(eab_hmac_key), EAB_HMAC_KEY),
        tos_agreed=tos_agreed,
        origin=origin,
        status=status,
    )
    ensure_absent(session, AcmeAccount, "ACME account", name=name)
    if account_url is not None:
        ensure_absent(session, AcmeAccount, "ACME account", account_url=account_url)
    return add(session, account, "ACME account")


def get_acme_account(session: Session, name: str) -> AcmeAccount:
    return get_by(session, AcmeAccount, "ACME account", name=name)


def list_acme_accounts(session: Session) -> Sequence[AcmeAccount]:
    return session.scalars(select(AcmeAccount).order_by(AcmeAccount.name)).all()


def acme_account_key(box: SecretBox, account: AcmeAccount) -> Secret:
    """The account key PEM: the only way to get it out of the store."""
    return box.open(account.key_ciphertext, ACCOUNT_KEY)


def acme_account_eab_hmac_key(box: SecretBox, account: AcmeAccount) -> Secret | None:
    return box.open_optional(account.eab_hmac_key_ciphertext, EAB_HMAC_KEY)


def set_stipa_account(
    session: Session,
    box: SecretBox,
    *,
    account_id: str,
    user_id: str,
    password: Secret,
    environment: StiPaEnvironment = StiPaEnvironment.PRODUCTION,
    base_url: str | None = None,
    spc_pattern: str | None = None,
) -> StiPaAccount:
    """Create or replace the credentials of one STI-PA account in one environment."""
    account_id = check_spc(account_id, spc_pattern)
    user_id = check_stipa_user_id(user_id)
    ciphertext = box.seal(check_stipa_password(password), STIPA_PASSWORD)
    base_url = base_url and check_url(base_url, "STI-PA base URL")
    existing = session.scalars(
        select(StiPaAccount).filter_by(account_id=account_id, environment=environment)
    ).one_or_none()
    if existing is None:
        return add(
            session,
            StiPaAccount(
                account_id=account_id,
                environment=environment,
                user_id=user_id,
                password_ciphertext=ciphertext,
                base_url=base_url,
            ),
            "STI-PA account",
        )
    existing.user_id, existing.password_ciphertext = user_id, ciphertext
    existing.base_url = base_url
    session.flush()
    return existing


def get_stipa_account(
    session: Session,
    account_id: str,
    environment: StiPaEnvironment = StiPaEnvironment.PRODUCTION,
) -> StiPaAccount:
    return get_by(
        session,
        StiPaAccount,
        "STI-PA account",
        account_id=account_id.strip().upper(),
        environment=environment,
    )


def list_stipa_accounts(session: Session) -> Sequence[StiPaAccount]:
    return session.scalars(
        select(StiPaAccount).order_by(StiPaAccount.account_id, StiPaAccount.environment)
    ).all()


def stipa_password(box: SecretBox, account: StiPaAccount) -> Secret:
    return box.open(account.password_ciphertext, STIPA_PASSWORD)
