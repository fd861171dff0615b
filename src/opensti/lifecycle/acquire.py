"""Certificate entries (one per SPC) and getting their certificates now.

    CertificateService(db, box, settings, accounts, clock=...)
     .add_entry(...)                    SPC, ACME account, STI-PA account or a brought token
     .list_entries() / .show_entry(n)   entries, their certificates and lifecycle events
     .request_certificate(n, progress)  the reconcile loop's flow, now: SPC token -> order ->
                                        tkauth-01 -> CSR -> chain -> STI-PA trust list check ->
                                        store -> publish -> deploy -> activate
     .export_certificate(n, dir, ...)   chain + key as PEM files or one PKCS#12 file
     .signing_entries()                 the active certificates as STI-AS signing entries

A request runs the same resumable flow as the reconcile loop
(:meth:`opensti.lifecycle.reconcile.Reconciler.run_now`): one
:class:`~opensti.store.LifecycleEvent` per step, the failing step with its error, and
a pending certificate row that the next request (or the loop) resumes.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.orm import Session

from opensti.acme._keys import key_fingerprint
from opensti.config import Settings
from opensti.core.certs import load_certificate_chain
from opensti.core.errors import InvalidInput, NoActiveCertificate
from opensti.core.passport import load_private_key
from opensti.core.tnauthlist import TNAuthList
from opensti.lifecycle.accounts import (
    AccountService,
    Clock,
    profile_of,
    utc_now,
)
from opensti.lifecycle.branding import IconFetch, entry_rcd_claims, icon_digest, run_blocking
from opensti.lifecycle.deploy import DeploymentMaterial, pkcs12_bundle
from opensti.lifecycle.flow import FlowStep
from opensti.lifecycle.reconcile import (
    Reconciler,
    check_renew_before,
    default_holder,
    hold_entry,
    release_hold,
)
from opensti.repository import x5u_for
from opensti.signing import SigningEntry
from opensti.stipa import (
    TokenBundle,
    TokenExpectation,
    check_token_claims,
    decode_spc_token,
    parse_token_file,
    token_trust,
    verify_token_issuer,
)
from opensti.store import (
    Certificate,
    CertificateEntry,
    CertificateState,
    Database,
    LifecycleEvent,
    RoutingChange,
    Secret,
    SecretBox,
    StiPaEnvironment,
    acme_account_key,
    active_certificate,
    certificate_key,
    change_routing,
    check_removable,
    create_entry,
    delete_entry,
    get_acme_account,
    get_certificate,
    get_entry,
    list_certificates,
    list_entries,
    list_events,
    set_certificate_state,
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
    "RemovedEntry",
]

ExportFormat = Literal["pem", "pfx"]
#: Said when an entry became the default signer by being the first with a certificate.
FIRST_DEFAULT_NOTE = (
    "entry {name!r} is the default signer: the first entry with a certificate, it signs "
    "every call no entry's prefix claims (change it: opensti cert set NAME --default-signer)"
)
#: Certificates revoked at the CA when their entry is removed with ``revoke``.
_REVOCABLE = (CertificateState.ACTIVE, CertificateState.SUPERSEDED, CertificateState.PENDING)
#: The attestation of an entry that was given none: C, the level that claims least.
DEFAULT_ATTEST = "C"


#: Every step of a request, in order (the reconcile loop's steps).
AcquireStep = FlowStep


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
    #: Routing: the calling-number prefixes it signs, whether it signs every call no
    #: prefix claims, and the attestation used when a caller gives none.
    prefixes: tuple[str, ...] = ()
    default_signer: bool = False
    attest: str = DEFAULT_ATTEST
    #: The Rich Call Data its calls assert (RFC 9795): display name, logo URL and the
    #: logo's rcdi digest as last fetched.
    rcd_name: str | None = None
    rcd_icon: str | None = None
    rcd_icon_digest: str | None = None
    #: What the last change did besides what was asked (e.g. the default moved).
    notes: tuple[str, ...] = ()

    @property
    def signs(self) -> str:
        """Which calls the entry signs, in words (the CLI and the entry page show it)."""
        if not self.enabled:
            return "no calls: the entry is disabled"
        parts = []
        if self.prefixes:
            parts.append("calls from numbers starting " + ", ".join(self.prefixes))
        if self.default_signer:
            parts.append("every call no other entry's prefix claims (default signer)")
        if not parts:
            return "no calls: no prefixes and not the default signer"
        return " and ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "active": self.active and self.active.to_dict(),
            "prefixes": list(self.prefixes),
            "notes": list(self.notes),
            "signs": self.signs,
        }


@dataclass(frozen=True, slots=True)
class RemovedEntry:
    """An entry removed; its published chains stay on the STI-CR until they expire."""

    name: str
    still_published: int
    revoked: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "revoked": list(self.revoked)}


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
    #: E.g. that the entry became the default signer (the first to be active).
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry": self.entry,
            "spc": self.spc,
            "certificate": self.certificate.to_dict(),
            "superseded_id": self.superseded_id,
            "steps": list(self.steps),
            "notes": list(self.notes),
        }


def _x5u(cert: Certificate, public_base_url: str | None) -> str | None:
    if cert.x5u_url:
        return cert.x5u_url
    return x5u_for(cert.id, public_base_url) if public_base_url else None


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
        icon_fetch: IconFetch | None = None,
    ) -> None:
        self.db = db
        self.box = box
        self.settings = settings
        self.accounts = accounts
        self.clock = clock
        #: Fetches an entry's rcd logo (x5u rules) when it is set; None: refused.
        self.icon_fetch = icon_fetch

    def _icon_digest(
        self, change: RoutingChange, known: tuple[str | None, str | None] = (None, None)
    ) -> str | None:
        """The digest of the logo ``change`` sets, fetched now (before any write);
        ``known`` is the entry's (URL, digest), kept without a fetch for the same URL
        (a form saved again), since the refresh loop follows the logo's content."""
        url = change.new_icon
        if url is None:
            return None
        if known[0] == url and known[1] is not None:
            return known[1]
        return icon_digest(self.icon_fetch, url)

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
        renew_before: dt.timedelta | None = None,
        routing: RoutingChange | None = None,
        hold: bool = False,
    ) -> EntryInfo:
        """A new entry; an SPC token brought here (file, or JWT + CRL URL) is checked
        now against the SPC and the account key, so a wrong one is refused at once.
        ``renew_before`` is the entry's own renewal margin (None: the global one);
        ``routing`` says which calls it signs (see :func:`opensti.store.change_routing`);
        ``hold`` keeps the renewal loop off it until its first certificate is requested."""
        routing = routing or RoutingChange()
        digest = self._icon_digest(routing)
        bundle = _bundle(token_file, token, crl_url)
        if renew_before is not None:
            renew_before = check_renew_before(renew_before)
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
                renew_before=renew_before,
                spc_pattern=self.settings.spc_pattern,
                enabled=True if routing.enabled is None else routing.enabled,
            )
            notes = change_routing(
                session, entry, replace(routing, enabled=None), icon_digest=digest
            )
            if bundle is not None:
                set_entry_spc_token(session, self.box, entry, Secret.from_text(bundle.token))
            if hold:
                hold_entry(session, entry.id)
            return self._entry_info(session, entry, notes)

    def change_entry(self, name: str, change: RoutingChange) -> EntryInfo:
        """Change which calls the entry signs, its attestation, its Rich Call Data, or
        enable/disable it (a disabled entry neither renews nor signs; its chains stay
        published). A logo is fetched first: one that cannot be used changes nothing."""
        with self.db.read_session() as session:
            entry = get_entry(session, name)
            known = (entry.rcd_icon_url, entry.rcd_icon_digest)
        digest = self._icon_digest(change, known)
        with self.db.session() as session:
            entry = get_entry(session, name)
            notes = change_routing(session, entry, change, icon_digest=digest)
            return self._entry_info(session, entry, notes)

    def remove_entry(self, name: str, *, revoke: bool = False) -> RemovedEntry:
        """Remove the entry; its published chains stay on the STI-CR until they expire,
        unless ``revoke``: then each is revoked at the CA first (and unpublished)."""
        with self.db.session() as session:
            entry = get_entry(session, name)
            check_removable(session, entry)
            revoked = self._revoke_all(session, entry) if revoke else ()
            release_hold(session, entry.id)
            kept = delete_entry(session, entry, now=self.clock())
        return RemovedEntry(name=name, still_published=kept, revoked=revoked)

    def _revoke_all(self, session: Session, entry: CertificateEntry) -> tuple[int, ...]:
        now = self.clock()
        revoked = []
        client = None
        for cert in list_certificates(session, entry.id, states=_REVOCABLE):
            if cert.chain_pem is None or (cert.not_after and cert.not_after <= now):
                continue
            client = client or self.accounts.acme_client(entry.acme_account)
            client.revoke(load_certificate_chain(cert.chain_pem.encode("ascii")).leaf)
            set_certificate_state(session, cert.id, CertificateState.REVOKED, now=now)
            revoked.append(cert.id)
        return tuple(revoked)

    def _check_brought_token(
        self, bundle: TokenBundle, tnauthlist: TNAuthList, fingerprint: str
    ) -> None:
        token = decode_spc_token(bundle.token, bundle.crl_url)
        now = self.clock()
        check_token_claims(token, TokenExpectation(tnauthlist, fingerprint), now)
        anchors = self.accounts.stipa_trust_anchors(required=False)
        if anchors:
            verify_token_issuer(token, token_trust(anchors, verify=self.accounts.http_verify), now)

    def _entry_info(
        self, session: Session, entry: CertificateEntry, notes: Sequence[str] = ()
    ) -> EntryInfo:
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
            prefixes=tuple(entry.orig_prefixes or ()),
            default_signer=entry.is_default_signer,
            attest=entry.default_attest or DEFAULT_ATTEST,
            rcd_name=entry.rcd_name,
            rcd_icon=entry.rcd_icon_url,
            rcd_icon_digest=entry.rcd_icon_digest,
            notes=tuple(notes),
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
        """Get a certificate for entry ``name`` now and make it active: the reconcile
        loop's flow, resumed from the entry's pending certificate if there is one."""
        self.accounts.stipa_trust_anchors()  # every SPC token is checked: refuse early
        with self.db.read_session() as session:
            entry = get_entry(session, name)
            spc = entry.spc
            previous = active_certificate(session, entry.id)
            previous_id = None if previous is None else previous.id
            was_default = entry.is_default_signer
            if entry.stipa_account is None and self.settings.ca_trust_anchors is None:
                raise InvalidInput(
                    "no STI-CA trust list to check the certificate against: set "
                    "OPENSTI_CA_TRUST_ANCHORS or give the entry an STI-PA account"
                )
        # A holder of its own: in `opensti serve` the loop runs in this process under
        # host:pid, and sharing its name would let each take the lease from the other.
        holder = f"{default_holder()}:{secrets.token_hex(4)}"
        reconciler = Reconciler(
            self.db, self.box, self.settings, self.accounts, clock=self.clock, holder=holder
        )
        certificate_id, steps = run_blocking(reconciler.run_now(name, progress=progress))
        with self.db.read_session() as session:
            cert = get_certificate(session, certificate_id)
            assert cert.chain_pem is not None  # an active certificate has its chain
            promoted = not was_default and get_entry(session, name).is_default_signer
            return AcquisitionResult(
                entry=name,
                spc=spc,
                certificate=CertificateInfo.of(cert, name, self.public_base_url),
                superseded_id=previous_id,
                steps=steps,
                chain_pem=cert.chain_pem.encode("ascii"),
                notes=(FIRST_DEFAULT_NOTE.format(name=name),) if promoted else (),
            )

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
                        attest=entry.default_attest or DEFAULT_ATTEST,
                        certificate_id=str(cert.id) if cert is not None and key else None,
                        rcd=entry_rcd_claims(entry),
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
