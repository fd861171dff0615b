"""Certificate entries (one per SPC) and getting their certificates now.

    CertificateService(db, box, settings, accounts, clock=...)
     .add_entry(...)                    SPC, ACME account, STI-PA account or a brought token
     .list_entries() / .show_entry(n)   entries, their certificates and lifecycle events
     .request_certificate(n, progress)  SPC token -> order -> tkauth-01 -> CSR -> chain ->
                                        check against the STI-PA trust list -> store, activate
     .export_certificate(n, dir, ...)   chain + key as PEM files or one PKCS#12 file
     .signing_entries()                 the active certificates as STI-AS signing entries

A request records one :class:`~opensti.store.LifecycleEvent` per step, and on failure
the failing step with its error; nothing else changes when it fails.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.orm import Session

from opensti.acme import IssuedChain, Step, obtain_certificate
from opensti.acme._keys import key_fingerprint
from opensti.config import Settings
from opensti.core.certs import CertificateChain, TrustContext, validate_shaken_certificate
from opensti.core.errors import InvalidInput, NoActiveCertificate, OpenSTIError, UpstreamError
from opensti.core.passport import load_private_key
from opensti.core.tnauthlist import TNAuthList
from opensti.lifecycle.accounts import (
    AccountService,
    Clock,
    load_pem_certificates,
    profile_of,
    utc_now,
)
from opensti.lifecycle.deploy import DeploymentMaterial, pkcs12_bundle
from opensti.repository import x5u_for
from opensti.signing import SigningEntry
from opensti.stipa import (
    DEFAULT_MIN_LIFE,
    SPCToken,
    StiPaClient,
    TokenBundle,
    TokenExpectation,
    check_token_claims,
    decode_spc_token,
    parse_token_file,
    token_trust,
    validate_spc_token,
    verify_token_issuer,
)
from opensti.store import (
    Certificate,
    CertificateEntry,
    Database,
    EventOutcome,
    LifecycleEvent,
    Secret,
    SecretBox,
    StiPaEnvironment,
    acme_account_key,
    active_certificate,
    add_certificate,
    certificate_key,
    create_entry,
    entry_spc_token,
    get_acme_account,
    get_entry,
    list_certificates,
    list_entries,
    list_events,
    record_event,
    set_entry_spc_token,
)
from opensti.store._validate import check_spc

__all__ = [
    "AcquireStep",
    "AcquisitionResult",
    "CertificateInfo",
    "CertificateService",
    "EntryDetail",
    "EntryInfo",
    "EventInfo",
    "ExportFormat",
    "Progress",
]

ExportFormat = Literal["pem", "pfx"]


class AcquireStep(StrEnum):
    """Every step of a request, in order: the ACME steps, then ours."""

    SPC_TOKEN = Step.SPC_TOKEN.value
    NEW_ORDER = Step.NEW_ORDER.value
    CHALLENGE = Step.CHALLENGE.value
    FINALIZE = Step.FINALIZE.value
    DOWNLOAD = Step.DOWNLOAD.value
    VALIDATE = "validate"
    ACTIVATE = "activate"


#: Called with each step as it starts (the CLI draws one progress line per step).
Progress = Callable[[AcquireStep], None]


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    id: int
    entry: str
    state: str
    serial: str | None
    fingerprint: str | None
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    x5u: str | None

    @classmethod
    def of(cls, cert: Certificate, entry: str, public_base_url: str | None) -> CertificateInfo:
        return cls(
            id=cert.id,
            entry=entry,
            state=cert.state.value,
            serial=cert.serial,
            fingerprint=cert.fingerprint,
            not_before=cert.not_before,
            not_after=cert.not_after,
            x5u=_x5u(cert, public_base_url),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(not_before=_iso(self.not_before), not_after=_iso(self.not_after))
        return data


@dataclass(frozen=True, slots=True)
class EntryInfo:
    name: str
    spc: str
    acme_account: str
    ca: str
    stipa_account_id: str | None
    crl_url: str | None
    #: An SPC token was brought for this entry (the token itself is never shown).
    has_token: bool
    enabled: bool
    active: CertificateInfo | None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "active": self.active and self.active.to_dict()}


@dataclass(frozen=True, slots=True)
class EventInfo:
    at: dt.datetime
    step: str
    outcome: str
    error: str | None
    certificate_id: int | None

    @classmethod
    def of(cls, event: LifecycleEvent) -> EventInfo:
        return cls(event.at, event.step, event.outcome.value, event.error, event.certificate_id)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "at": _iso(self.at)}


@dataclass(frozen=True, slots=True)
class EntryDetail:
    entry: EntryInfo
    certificates: list[CertificateInfo]
    events: list[EventInfo]

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.entry.to_dict(),
            "certificates": [c.to_dict() for c in self.certificates],
            "events": [e.to_dict() for e in self.events],
        }


@dataclass(frozen=True, slots=True)
class AcquisitionResult:
    """A certificate obtained, validated, stored and made active."""

    entry: str
    spc: str
    certificate: CertificateInfo
    #: The certificate it replaced as the active one (still published until it expires).
    superseded_id: int | None
    steps: tuple[str, ...]
    chain_pem: bytes = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry": self.entry,
            "spc": self.spc,
            "certificate": self.certificate.to_dict(),
            "superseded_id": self.superseded_id,
            "steps": list(self.steps),
        }


def _x5u(cert: Certificate, public_base_url: str | None) -> str | None:
    if cert.x5u_url:
        return cert.x5u_url
    return x5u_for(cert.id, public_base_url) if public_base_url else None


@dataclass
class _StoredToken:
    """A token the operator brought, validated when the flow asks for it."""

    bundle: TokenBundle
    anchors: tuple[x509.Certificate, ...]
    verify: bool | ssl.SSLContext
    clock: Clock

    def request_token(
        self, tnauthlist: TNAuthList, fingerprint: str, *, padded: bool = True, ca: bool = False
    ) -> SPCToken:
        expected = TokenExpectation(tnauthlist, fingerprint, ca, DEFAULT_MIN_LIFE)
        trust = token_trust(self.anchors, verify=self.verify)
        return validate_spc_token(self.bundle, expected, trust=trust, now=self.clock())


@dataclass
class _Recorder:
    """Collects the steps of one request; written to the store at the end."""

    progress: Progress | None
    clock: Clock
    steps: list[tuple[AcquireStep, dt.datetime]] = field(default_factory=list)

    def __call__(self, step: Step | AcquireStep) -> None:
        self.steps.append((AcquireStep(step.value), self.clock()))
        if self.progress is not None:
            self.progress(AcquireStep(step.value))

    def write(
        self,
        session: Session,
        entry_id: int,
        *,
        error: OpenSTIError | None = None,
        certificate_id: int | None = None,
    ) -> None:
        for index, (step, at) in enumerate(self.steps):
            last = index == len(self.steps) - 1
            failed = last and error is not None
            record_event(
                session,
                entry_id,
                step.value,
                EventOutcome.FAILED if failed else EventOutcome.SUCCEEDED,
                at=at,
                error=str(error) if failed else None,
                certificate_id=certificate_id if last else None,
            )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> Secret:
    return Secret(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _write(path: Path, data: bytes, mode: int) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), mode)
        handle.write(data)
    return path


class CertificateService:
    """Certificate entries and their certificates over one store."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        settings: Settings,
        accounts: AccountService,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self.db = db
        self.box = box
        self.settings = settings
        self.accounts = accounts
        self.clock = clock

    @property
    def public_base_url(self) -> str | None:
        return self.settings.public_base_url

    # -- entries -----------------------------------------------------------------------

    def add_entry(
        self,
        *,
        name: str,
        spc: str,
        acme_account: str,
        stipa_account_id: str | None = None,
        crl_url: str | None = None,
        token_file: bytes | None = None,
        token: str | None = None,
    ) -> EntryInfo:
        """A new entry; an SPC token brought here (file, or JWT + CRL URL) is checked
        now against the SPC and the account key, so a wrong one is refused at once."""
        bundle = _bundle(token_file, token, crl_url)
        if bundle is None and stipa_account_id is None:
            raise InvalidInput(
                "an entry needs an STI-PA account (--stipa) or an SPC token "
                "(--token-file, or --token with --crl-url)"
            )
        spc = check_spc(spc, self.settings.spc_pattern)
        with self.db.session() as session:
            account = get_acme_account(session, acme_account)
            stipa = None
            if stipa_account_id is not None:
                stipa = self.accounts.find_stipa(
                    session, stipa_account_id, prefer_staging=account.staging
                )
            if bundle is not None:
                key = load_private_key(acme_account_key(self.box, account).reveal())
                fingerprint = key_fingerprint(key, profile_of(account.ca).fingerprint_algorithm)
                self._check_brought_token(bundle, TNAuthList.for_spc(spc), fingerprint)
            entry = create_entry(
                session,
                name=name,
                spc=spc,
                acme_account=acme_account,
                stipa_account_id=None if stipa is None else stipa.account_id,
                stipa_environment=stipa.environment if stipa else StiPaEnvironment.PRODUCTION,
                crl_url=crl_url or (None if bundle is None else bundle.crl_url),
                spc_pattern=self.settings.spc_pattern,
            )
            if bundle is not None:
                set_entry_spc_token(session, self.box, entry, Secret.from_text(bundle.token))
            return self._entry_info(session, entry)

    def _check_brought_token(
        self, bundle: TokenBundle, tnauthlist: TNAuthList, fingerprint: str
    ) -> None:
        token = decode_spc_token(bundle.token, bundle.crl_url)
        now = self.clock()
        check_token_claims(token, TokenExpectation(tnauthlist, fingerprint), now)
        anchors = self.accounts.stipa_trust_anchors(required=False)
        if anchors:
            verify_token_issuer(token, token_trust(anchors, verify=self.accounts.http_verify), now)

    def _entry_info(self, session: Session, entry: CertificateEntry) -> EntryInfo:
        active = active_certificate(session, entry.id)
        return EntryInfo(
            name=entry.name,
            spc=entry.spc,
            acme_account=entry.acme_account.name,
            ca=entry.acme_account.ca.name,
            stipa_account_id=None
            if entry.stipa_account is None
            else entry.stipa_account.account_id,
            crl_url=entry.crl_url,
            has_token=entry.spc_token_ciphertext is not None,
            enabled=entry.enabled,
            active=None
            if active is None
            else CertificateInfo.of(active, entry.name, self.public_base_url),
        )

    def list_entries(self) -> list[EntryInfo]:
        with self.db.read_session() as session:
            return [self._entry_info(session, entry) for entry in list_entries(session)]

    def show_entry(self, name: str, *, events: int = 20) -> EntryDetail:
        with self.db.read_session() as session:
            entry = get_entry(session, name)
            return EntryDetail(
                entry=self._entry_info(session, entry),
                certificates=[
                    CertificateInfo.of(cert, entry.name, self.public_base_url)
                    for cert in list_certificates(session, entry.id)
                ],
                events=[EventInfo.of(e) for e in list_events(session, entry.id, limit=events)],
            )

    # -- getting a certificate ---------------------------------------------------------

    def request_certificate(
        self, name: str, *, progress: Progress | None = None
    ) -> AcquisitionResult:
        """Run the whole acquisition for entry ``name`` now and make the result active."""
        recorder = _Recorder(progress, self.clock)
        self.accounts.stipa_trust_anchors()  # every SPC token is checked: refuse early
        with self.db.read_session() as session:
            entry = get_entry(session, name)
            entry_id, spc = entry.id, entry.spc
            client = self.accounts.acme_client(entry.acme_account)
            stored = entry_spc_token(self.box, entry)
            stipa = (
                self.accounts.stipa_client(entry.stipa_account, expected_crl_url=entry.crl_url)
                if entry.stipa_account is not None
                else None
            )
            crl_url = entry.crl_url
        try:
            if stipa is None and self.settings.ca_trust_anchors is None:
                raise InvalidInput(
                    "no STI-CA trust list to check the certificate against: set "
                    "OPENSTI_CA_TRUST_ANCHORS or give the entry an STI-PA account"
                )
            source = stipa if stored is None else self._stored_source(stored, crl_url)
            assert source is not None  # add_entry requires an STI-PA account or a token
            issued = obtain_certificate(
                client,
                spc,
                source,
                organization=self.settings.organization,
                progress=recorder,
            )
            recorder(AcquireStep.VALIDATE)
            anchors = self._ca_anchors(stipa)
            _check_trusted(issued.chain, anchors, self.clock())
            recorder(AcquireStep.ACTIVATE)
            return self._store(entry_id, name, spc, issued, recorder)
        except OpenSTIError as exc:
            self._record_failure(entry_id, recorder, exc)
            raise
        finally:
            if stipa is not None:
                stipa.close()

    def _stored_source(self, token: Secret, crl_url: str | None) -> _StoredToken:
        return _StoredToken(
            TokenBundle(token.reveal_text(), crl_url),
            self.accounts.stipa_trust_anchors(),
            self.accounts.http_verify,
            self.clock,
        )

    def _ca_anchors(self, stipa: StiPaClient | None) -> tuple[x509.Certificate, ...]:
        """The STI-CA roots an issued chain must lead to: configured, or the STI-PA's list."""
        path = self.settings.ca_trust_anchors
        if path is not None or stipa is None:
            assert path is not None  # request_certificate checked one of them is there
            return load_pem_certificates(path, "STI-CA trust anchors file")
        return tuple(stipa.ca_list())

    def _store(
        self, entry_id: int, name: str, spc: str, issued: IssuedChain, recorder: _Recorder
    ) -> AcquisitionResult:
        now = self.clock()
        with self.db.session() as session:
            previous = active_certificate(session, entry_id)
            cert = add_certificate(
                session,
                self.box,
                entry_id,
                chain_pem=issued.chain_pem,
                key_pem=_pem_key(issued.key),
                now=now,
                activate=True,
            )
            cert.x5u_url = (
                x5u_for(cert.id, self.public_base_url) if self.public_base_url else issued.x5u
            )
            entry = get_entry(session, name)
            entry.failure_count, entry.failing_since, entry.last_error = 0, None, None
            recorder.write(session, entry_id, certificate_id=cert.id)
            session.flush()
            info = CertificateInfo.of(cert, name, self.public_base_url)
        return AcquisitionResult(
            entry=name,
            spc=spc,
            certificate=info,
            superseded_id=None if previous is None else previous.id,
            steps=tuple(step.value for step, _ in recorder.steps),
            chain_pem=issued.chain_pem,
        )

    def _record_failure(self, entry_id: int, recorder: _Recorder, error: OpenSTIError) -> None:
        if not recorder.steps:
            return  # refused before anything was attempted: a configuration error
        now = self.clock()
        with self.db.session() as session:
            recorder.write(session, entry_id, error=error)
            entry = session.get(CertificateEntry, entry_id)
            if entry is not None:
                entry.failure_count += 1
                entry.failing_since = entry.failing_since or now
                entry.last_error = str(error)

    # -- using certificates ------------------------------------------------------------

    def export_certificate(
        self,
        name: str,
        out_dir: Path,
        *,
        format: ExportFormat = "pem",
        password: Secret | None = None,
    ) -> list[Path]:
        """Write the active certificate: ``NAME-chain.pem`` + ``NAME-key.pem`` (0600), or
        ``NAME.pfx`` (0600; encrypted when a password is given)."""
        if format not in ("pem", "pfx"):
            raise InvalidInput(f"export format {format!r} is not pem or pfx", value=format)
        with self.db.read_session() as session:
            entry = get_entry(session, name)
            cert = active_certificate(session, entry.id)
            if cert is None:
                raise NoActiveCertificate(
                    f"entry {name!r} has no active certificate (run: opensti cert request {name})"
                )
            material = DeploymentMaterial.of(self.box, cert, public_base_url=self.public_base_url)
        try:
            out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if format == "pfx":
                return [_write(out_dir / f"{name}.pfx", pkcs12_bundle(material, password), 0o600)]
            return [
                _write(out_dir / f"{name}-chain.pem", material.chain_pem, 0o644),
                _write(out_dir / f"{name}-key.pem", material.key_pem.reveal(), 0o600),
            ]
        except OSError as exc:
            raise InvalidInput(f"cannot write to {str(out_dir)!r}: {exc.strerror}") from None

    def signing_entries(self) -> list[SigningEntry]:
        """Every enabled entry for the STI-AS, with its active certificate's key and x5u."""
        entries = []
        with self.db.read_session() as session:
            for entry in list_entries(session, enabled_only=True):
                cert = active_certificate(session, entry.id)
                x5u = None if cert is None else _x5u(cert, self.public_base_url)
                key = None
                if cert is not None and x5u is not None:
                    key = load_private_key(certificate_key(self.box, cert).reveal())
                entries.append(
                    SigningEntry(
                        name=entry.name,
                        spc=entry.spc,
                        key=key,
                        x5u=x5u if key else None,
                        prefixes=tuple(entry.orig_prefixes),
                        is_default=entry.is_default_signer,
                        attest=entry.default_attest or "C",
                        certificate_id=str(cert.id) if cert is not None and key else None,
                    )
                )
        return entries


def _bundle(token_file: bytes | None, token: str | None, crl_url: str | None) -> TokenBundle | None:
    if token_file is not None and token is not None:
        raise InvalidInput("give --token-file or --token, not both")
    if token_file is not None:
        bundle = parse_token_file(token_file)
        if crl_url and bundle.crl_url and bundle.crl_url != crl_url:
            raise InvalidInput(
                f"the token file names CRL {bundle.crl_url}, not --crl-url {crl_url}"
            )
        return TokenBundle(bundle.token, bundle.crl_url or crl_url)
    if token is not None:
        return TokenBundle(token.strip(), crl_url)
    return None


def _check_trusted(
    chain: CertificateChain, anchors: tuple[x509.Certificate, ...], now: dt.datetime
) -> None:
    try:
        validate_shaken_certificate(chain, TrustContext(anchors=anchors), now)
    except OpenSTIError as exc:
        raise UpstreamError(
            f"the CA issued a certificate that does not pass the STI-PA trust list: {exc}"
        ) from None
