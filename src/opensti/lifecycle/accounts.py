"""Certificate authorities, ACME accounts and STI-PA credentials: the operations behind
``opensti ca|account|stipa`` and the REST API.

Every operation checks its whole input, and talks to the CA or STI-PA, before it
writes anything: a refusal (bad input, an unreachable or refusing service) leaves the
store as it was. Results are plain dataclasses with ``to_dict()``; secrets never
appear in them.

    AccountService(db, box, settings, clock=...)
     .list_cas() / .add_ca(...)                        built-in profiles + custom CAs
     .add_account(...) / .import_account(...)          register (EAB) or import a key
     .list_accounts() / .show_account(name)            URL, thumbprint, STI-PA fingerprint
     .set_stipa(...) / .list_stipa() / .test_stipa()   STI-PA API credentials, login test
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import ssl
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.orm import Session

from opensti.acme import (
    BUILTIN_PROFILES,
    AcmeClient,
    CAProfile,
    EABCredentials,
    import_account,
    key_fingerprint,
)
from opensti.config import Settings
from opensti.core.certs import read_certificates
from opensti.core.errors import Conflict, InvalidInput, NotFound
from opensti.core.passport import load_private_key
from opensti.stipa import StiPaClient, StiPaCredentials, stipa_base_url
from opensti.store import (
    AccountOrigin,
    AcmeAccount,
    CAKind,
    CertificateAuthority,
    Database,
    Secret,
    SecretBox,
    StiPaAccount,
    StiPaEnvironment,
    acme_account_key,
    create_acme_account,
    create_ca,
    delete_acme_account,
    delete_ca,
    get_acme_account,
    get_ca,
    list_acme_accounts,
    list_cas,
    list_stipa_accounts,
    set_stipa_account,
    stipa_password,
)
from opensti.store._validate import check_email, check_name, check_url

__all__ = [
    "AccountInfo",
    "AccountService",
    "CAInfo",
    "Clock",
    "StiPaInfo",
    "load_pem_certificates",
    "private_key_secret",
    "utc_now",
]

_log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]

# The store spells the padded identifier encoding "base64"; the ACME profile "padded".
_STORE_ENCODING = {"padded": "base64", "base64url": "base64url"}
_PROFILE_ENCODING = {stored: profile for profile, stored in _STORE_ENCODING.items()}


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True, slots=True)
class CAInfo:
    """A CA as the operator sees it: a built-in profile or a stored (custom) one."""

    name: str
    kind: str
    directory_url: str
    staging_directory_url: str | None
    needs_eab: bool
    terms_url: str | None
    identifier_encoding: str
    tkauth_field: str
    fingerprint_algorithm: str
    cert_key_is_account_key: bool
    honours_validity: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """An ACME account with what the STI-PA portal asks for (``fingerprint``)."""

    name: str
    ca: str
    staging: bool
    email: str | None
    account_url: str | None
    #: RFC 7638 JWK thumbprint of the account key, base64url.
    thumbprint: str
    #: ``SHA256 AA:BB:...``: the value the STI-PA binds SPC tokens to.
    fingerprint: str
    status: str
    origin: str
    eab_kid: str | None
    created_at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "created_at": _iso(self.created_at)}


@dataclass(frozen=True, slots=True)
class StiPaInfo:
    account_id: str
    environment: str
    user_id: str
    base_url: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_pem_certificates(path: Path, what: str) -> tuple[x509.Certificate, ...]:
    """Certificates from an operator's PEM file, each read on its own: one that cannot
    be read is skipped with a warning; no certificate at all is one :class:`InvalidInput`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the {what} {str(path)!r}: {exc.strerror}") from None
    found = read_certificates(data, source=str(path))
    for skipped in found.skipped:
        _log.warning("%s: certificate skipped: %s", what, skipped.describe())
    if not found.certificates:
        reason = f": {found.skipped[0].reason}" if found.skipped else ""
        raise InvalidInput(f"the {what} {str(path)!r} holds no certificate{reason}")
    return found.certificates


#: Settings of a built-in CA that its stored row has no column for.
_BUILTIN_ONLY = ("account_binding", "empty_payload_signing", "first_authorization_only")


def profile_of(ca: CertificateAuthority) -> CAProfile:
    """The ACME client's view of a stored CA row (plus what only a built-in CA sets)."""
    builtin = _builtin(ca.name) if ca.kind is not CAKind.CUSTOM else None
    extra = {k: getattr(builtin, k) for k in _BUILTIN_ONLY} if builtin else {}
    return CAProfile(
        name=ca.name,
        production_url=ca.directory_url,
        staging_url=ca.staging_directory_url,
        needs_eab=ca.needs_eab,
        terms_url=ca.terms_url,
        identifier_encoding=_PROFILE_ENCODING[ca.identifier_encoding],  # type: ignore[arg-type]
        cert_key_is_account_key=ca.cert_key_is_account_key,
        honours_validity_window=ca.honours_validity,
        tkauth_field=ca.tkauth_field,  # type: ignore[arg-type]
        fingerprint_algorithm=ca.fingerprint_algorithm,  # type: ignore[arg-type]
        custom=ca.kind is CAKind.CUSTOM,
        **extra,
    )


def _ca_info(profile: CAProfile) -> CAInfo:
    return CAInfo(
        name=profile.name,
        kind="custom" if profile.custom else "known",
        directory_url=profile.production_url,
        staging_directory_url=profile.staging_url,
        needs_eab=profile.needs_eab,
        terms_url=profile.terms_url,
        identifier_encoding=profile.identifier_encoding,
        tkauth_field=profile.tkauth_field,
        fingerprint_algorithm=profile.fingerprint_algorithm,
        cert_key_is_account_key=profile.cert_key_is_account_key,
        honours_validity=profile.honours_validity_window,
    )


def _builtin(name: str) -> CAProfile | None:
    return next((p for p in BUILTIN_PROFILES if p.name.casefold() == name.casefold()), None)


def _stored_ca(session: Session, name: str) -> CertificateAuthority | None:
    try:
        return get_ca(session, name)
    except NotFound:
        return None


def private_key_secret(key: ec.EllipticCurvePrivateKey) -> Secret:
    """The key as unencrypted PKCS#8 PEM, held as a :class:`Secret` until it is sealed."""
    return Secret(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _eab(kid: str | None, hmac_key: Secret | None) -> EABCredentials | None:
    if kid is None and hmac_key is None:
        return None
    if kid is None or hmac_key is None:
        raise InvalidInput("give both the EAB key id (--eab-kid) and HMAC key, or neither")
    return EABCredentials(kid, hmac_key.reveal().decode("ascii", "replace"))


def _environment(staging: bool) -> StiPaEnvironment:
    return StiPaEnvironment.STAGING if staging else StiPaEnvironment.PRODUCTION


def _stipa_info(row: StiPaAccount) -> StiPaInfo:
    return StiPaInfo(
        account_id=row.account_id,
        environment=row.environment.value,
        user_id=row.user_id,
        base_url=row.base_url
        or stipa_base_url(staging=row.environment is StiPaEnvironment.STAGING),
    )


class AccountService:
    """CAs, ACME accounts and STI-PA credentials over one store."""

    def __init__(
        self, db: Database, box: SecretBox, settings: Settings, *, clock: Clock = utc_now
    ) -> None:
        self.db = db
        self.box = box
        self.settings = settings
        self.clock = clock

    # -- remote clients --------------------------------------------------------------

    @property
    def tls_verify(self) -> bool | str:
        """TLS verification for the CA and STI-PA: the configured bundle, else system roots."""
        return str(self.settings.tls_ca_file) if self.settings.tls_ca_file else True

    @property
    def http_verify(self) -> bool | ssl.SSLContext:
        """The same for httpx (the STI-PA client), which wants a context, not a path."""
        path = self.settings.tls_ca_file
        return ssl.create_default_context(cafile=str(path)) if path else True

    def acme_client(self, account: AcmeAccount, **options: Any) -> AcmeClient:
        """A client for a stored account (its CA row loaded); ``options`` are
        :class:`AcmeClient`'s keywords (e.g. ``poll_timeout``)."""
        key = load_private_key(acme_account_key(self.box, account).reveal())
        return AcmeClient(
            profile_of(account.ca),
            key,
            staging=account.staging,
            account_url=account.account_url,
            verify=self.tls_verify,
            clock=self.clock,
            **options,
        )

    def stipa_client(
        self, row: StiPaAccount, *, expected_crl_url: str | None = None
    ) -> StiPaClient:
        """A client for stored STI-PA credentials, trusting the configured STI-PA anchors."""
        credentials = StiPaCredentials(
            row.account_id, row.user_id, stipa_password(self.box, row).reveal_text()
        )
        return StiPaClient(
            credentials,
            base_url=_stipa_info(row).base_url,
            trust_anchors=self.stipa_trust_anchors(required=False),
            verify=self.http_verify,
            clock=self.clock,
            expected_crl_url=expected_crl_url,
        )

    def stipa_trust_anchors(self, *, required: bool = True) -> tuple[x509.Certificate, ...]:
        path = self.settings.stipa_trust_anchors
        if path is None:
            if required:
                raise InvalidInput(
                    "no STI-PA trust anchors are configured to check SPC tokens: "
                    "set OPENSTI_STIPA_TRUST_ANCHORS to a PEM file of the STI-PA certificate(s)"
                )
            return ()
        return load_pem_certificates(path, "STI-PA trust anchors file")

    # -- CAs ---------------------------------------------------------------------------

    def list_cas(self) -> list[CAInfo]:
        """Built-in CAs first, then the stored ones (a stored built-in shows once)."""
        with self.db.read_session() as session:
            stored = {ca.name: profile_of(ca) for ca in list_cas(session)}
        builtin = [p for p in BUILTIN_PROFILES if p.name not in stored]
        return [_ca_info(p) for p in (*builtin, *stored.values())]

    def add_ca(
        self,
        name: str,
        directory_url: str,
        *,
        staging_directory_url: str | None = None,
        needs_eab: bool = False,
        terms_url: str | None = None,
        identifier_encoding: str = "padded",
        tkauth_field: str = "atc",
        fingerprint_algorithm: str = "jwk_thumbprint",
        cert_key_is_account_key: bool = False,
        honours_validity: bool = False,
    ) -> CAInfo:
        """A custom CA by its ACME directory URL (the ATIS defaults unless told)."""
        if _builtin(name) is not None:
            raise Conflict(f"CA {name!r} is built in; choose another name for a custom CA")
        if identifier_encoding not in _STORE_ENCODING:
            raise InvalidInput(
                f"identifier encoding {identifier_encoding!r} is not padded or base64url",
                value=identifier_encoding,
            )
        with self.db.session() as session:
            row = create_ca(
                session,
                name=name,
                directory_url=directory_url,
                staging_directory_url=staging_directory_url,
                needs_eab=needs_eab,
                terms_url=terms_url,
                kind=CAKind.CUSTOM,
                identifier_encoding=_STORE_ENCODING[identifier_encoding],
                tkauth_field=tkauth_field,
                fingerprint_algorithm=fingerprint_algorithm,
                cert_key_is_account_key=cert_key_is_account_key,
                honours_validity=honours_validity,
            )
            return _ca_info(profile_of(row))

    def remove_ca(self, name: str) -> CAInfo:
        """Forget a stored CA no account uses (a built-in one stays listed: it is code)."""
        with self.db.session() as session:
            row = _stored_ca(session, name)
            if row is None:
                if _builtin(name) is not None:
                    raise Conflict(f"CA {name!r} is built in and has no stored settings to remove")
                raise NotFound(f"no CA named {name!r}", value=name)
            info = _ca_info(profile_of(row))
            delete_ca(session, row)
            return info

    def _profile(self, session: Session, name: str) -> CAProfile:
        stored = _stored_ca(session, name)
        if stored is not None:
            return profile_of(stored)
        builtin = _builtin(name)
        if builtin is None:
            known = ", ".join(ca.name for ca in self.list_cas())
            raise NotFound(f"unknown CA {name!r} (known: {known})", value=name)
        return builtin

    def _ensure_ca(self, session: Session, profile: CAProfile) -> None:
        """A built-in CA gets its row the first time an account uses it."""
        if _stored_ca(session, profile.name) is not None:
            return
        create_ca(
            session,
            name=profile.name,
            directory_url=profile.production_url,
            staging_directory_url=profile.staging_url,
            needs_eab=profile.needs_eab,
            terms_url=profile.terms_url,
            kind=CAKind.KNOWN,
            identifier_encoding=_STORE_ENCODING[profile.identifier_encoding],
            tkauth_field=profile.tkauth_field,
            fingerprint_algorithm=profile.fingerprint_algorithm,
            cert_key_is_account_key=profile.cert_key_is_account_key,
            honours_validity=profile.honours_validity_window,
        )

    # -- ACME accounts -----------------------------------------------------------------

    def _prepare_account(self, ca: str, name: str | None, staging: bool) -> tuple[CAProfile, str]:
        """The CA's profile and a free account name: all checked before the CA is asked."""
        with self.db.read_session() as session:
            profile = self._profile(session, ca)
            if staging:
                profile.directory_url(staging=True)  # InvalidInput without a staging URL
            taken = {account.name for account in list_acme_accounts(session)}
        if name is not None:
            check_name(name, "account")
            if name in taken:
                raise Conflict(f"ACME account {name!r} already exists")
            return profile, name
        base = f"{profile.name}-staging" if staging else profile.name
        candidates = itertools.chain([base], (f"{base}-{n}" for n in itertools.count(2)))
        return profile, next(c for c in candidates if c not in taken)

    def add_account(
        self,
        ca: str,
        *,
        email: str,
        agree_tos: bool,
        staging: bool = False,
        eab_kid: str | None = None,
        eab_hmac_key: Secret | None = None,
        name: str | None = None,
    ) -> AccountInfo:
        """Register a new account key at the CA (with EAB when given) and store it.

        A CA that binds accounts by a key id inside the jwk (Peeringhub) takes
        ``eab_kid`` alone, without an HMAC key."""
        email = check_email(email)
        profile, name = self._prepare_account(ca, name, staging)
        key_binding = profile.account_binding == "jwk_kid"
        eab = None if key_binding else _eab(eab_kid, eab_hmac_key)
        key = ec.generate_private_key(ec.SECP256R1())
        client = AcmeClient(profile, key, staging=staging, verify=self.tls_verify, clock=self.clock)
        registered = client.register(
            email=email, agree_tos=agree_tos, eab=eab, key_id=eab_kid if key_binding else None
        )
        with self.db.session() as session:
            self._ensure_ca(session, profile)
            row = create_acme_account(
                session,
                self.box,
                name=name,
                ca=profile.name,
                key_pem=private_key_secret(key),
                staging=staging,
                email=email,
                account_url=registered.url,
                eab_kid=eab_kid if key_binding else None if eab is None else eab.kid,
                eab_hmac_key=eab_hmac_key if eab else None,
                tos_agreed=agree_tos,
                origin=AccountOrigin.CREATED,
                status=registered.status or "valid",
            )
            return self._account_info(row, profile)

    def import_account(
        self,
        ca: str,
        key_pem: Secret,
        *,
        account_url: str | None = None,
        staging: bool = False,
        name: str | None = None,
    ) -> AccountInfo:
        """An account registered elsewhere: its key, found at the CA (onlyReturnExisting)."""
        load_private_key(key_pem.reveal())
        if account_url is not None:
            check_url(account_url, "account URL")
        profile, name = self._prepare_account(ca, name, staging)
        _, found = import_account(
            profile,
            key_pem.reveal(),
            account_url=account_url,
            staging=staging,
            verify=self.tls_verify,
            clock=self.clock,
        )
        with self.db.session() as session:
            self._ensure_ca(session, profile)
            row = create_acme_account(
                session,
                self.box,
                name=name,
                ca=profile.name,
                key_pem=key_pem,
                staging=staging,
                email=next((c.removeprefix("mailto:") for c in found.contact), None),
                account_url=found.url,
                origin=AccountOrigin.IMPORTED,
                status=found.status or "valid",
            )
            return self._account_info(row, profile)

    def _account_info(self, row: AcmeAccount, profile: CAProfile | None = None) -> AccountInfo:
        profile = profile or profile_of(row.ca)
        key = load_private_key(acme_account_key(self.box, row).reveal())
        return AccountInfo(
            name=row.name,
            ca=profile.name,
            staging=row.staging,
            email=row.email,
            account_url=row.account_url,
            thumbprint=row.thumbprint,
            fingerprint=key_fingerprint(key, profile.fingerprint_algorithm),
            status=row.status,
            origin=row.origin.value,
            eab_kid=row.eab_kid,
            created_at=row.created_at,
        )

    def list_accounts(self) -> list[AccountInfo]:
        with self.db.read_session() as session:
            return [self._account_info(row) for row in list_acme_accounts(session)]

    def show_account(self, name: str) -> AccountInfo:
        with self.db.read_session() as session:
            return self._account_info(get_acme_account(session, name))

    def remove_account(self, name: str) -> AccountInfo:
        """Forget an ACME account no entry uses; the account stays open at the CA."""
        with self.db.session() as session:
            row = get_acme_account(session, name)
            info = self._account_info(row)
            delete_acme_account(session, row)
            return info

    # -- STI-PA ------------------------------------------------------------------------

    def set_stipa(
        self,
        *,
        account_id: str,
        user_id: str,
        password: Secret,
        staging: bool = False,
        base_url: str | None = None,
    ) -> StiPaInfo:
        """Create or replace the API credentials of one STI-PA account (primary OCN)."""
        with self.db.session() as session:
            row = set_stipa_account(
                session,
                self.box,
                account_id=account_id,
                user_id=user_id,
                password=password,
                environment=_environment(staging),
                base_url=base_url and base_url.rstrip("/"),
                spc_pattern=self.settings.spc_pattern,
            )
            return _stipa_info(row)

    def list_stipa(self) -> list[StiPaInfo]:
        with self.db.read_session() as session:
            return [_stipa_info(row) for row in list_stipa_accounts(session)]

    def test_stipa(
        self, account_id: str | None = None, *, staging: bool | None = None
    ) -> StiPaInfo:
        """Log in with the stored credentials; raise the STI-PA's refusal if any."""
        with self.db.read_session() as session:
            row = self.find_stipa(session, account_id, staging=staging)
            info = _stipa_info(row)
            client = self.stipa_client(row)
        with client:
            client.login()
        return info

    def find_stipa(
        self,
        session: Session,
        account_id: str | None,
        *,
        staging: bool | None = None,
        prefer_staging: bool | None = None,
    ) -> StiPaAccount:
        """One stored STI-PA account: by id, and by environment when both are stored
        (``staging`` insists on one; ``prefer_staging`` only breaks a tie)."""
        rows = [
            row
            for row in list_stipa_accounts(session)
            if (account_id is None or row.account_id == account_id.strip().upper())
            and (staging is None or row.environment is _environment(staging))
        ]
        if not rows:
            wanted = f"account {account_id!r}" if account_id else "any account"
            raise NotFound(
                f"no STI-PA credentials for {wanted} (set them with: opensti stipa set)",
                value=account_id,
            )
        if len(rows) > 1 and prefer_staging is not None:
            rows = [r for r in rows if r.environment is _environment(prefer_staging)] or rows
        if len(rows) > 1:
            choices = ", ".join(f"{r.account_id} ({r.environment.value})" for r in rows)
            raise InvalidInput(f"several STI-PA accounts match ({choices}): say which one")
        return rows[0]
