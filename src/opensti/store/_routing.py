"""Which entry signs which calls: the default signer, calling-number prefixes, the
default attestation, enabled or not; and removing entries, CAs and accounts.

The rules, checked here so every front door (CLI, REST, web UI) gives the same answer
and a refused change writes nothing (the caller's transaction rolls back):

- At most one entry is the default signer (also a unique partial index). Making
  another entry the default *moves* the role: the old one is unset and the returned
  notes say so, since an operator who asks for it means it and a refusal would leave
  a window with no default between two commands.
- The default signer is enabled: disabling it, or removing it while other entries
  remain, is refused until another entry takes the role (or ``--no-default-signer``).
- A prefix is E.164 digits (1 to 15, a leading ``+`` dropped) and belongs to one
  entry: the same prefix on a second entry is refused, naming the first. Nested
  prefixes on different entries are the point of "longest prefix wins".
- When no entry is the default and no other entry has a certificate yet, the first
  entry whose certificate becomes active becomes the default (one obvious start).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from opensti.core.bounds import check_icon_url, check_rcd_name
from opensti.core.errors import Conflict, InvalidInput
from opensti.store._models import CertificateEntry
from opensti.store._validate import check_attest

__all__ = [
    "RoutingChange",
    "change_routing",
    "check_prefixes",
    "default_signer",
    "other_entries",
    "refuse_default_leaving",
]

#: E.164 numbers have at most 15 digits (ITU-T E.164 section 6.1).
MAX_PREFIX_DIGITS = 15


@dataclass(frozen=True, slots=True)
class RoutingChange:
    """What to change on an entry; None (or empty) leaves a setting as it is.

    ``add_prefixes`` are added to the entry's own, after ``clear_prefixes`` empties
    them (both together replace the list). ``rcd_name`` and ``rcd_icon`` set the Rich
    Call Data the entry asserts; ``""`` removes one.
    """

    default_signer: bool | None = None
    add_prefixes: tuple[str, ...] = ()
    clear_prefixes: bool = False
    attest: str | None = None
    enabled: bool | None = None
    rcd_name: str | None = None
    rcd_icon: str | None = None

    @property
    def new_icon(self) -> str | None:
        """The logo URL to fetch (checked: https), when the change sets one."""
        return check_icon_url(self.rcd_icon) if self.rcd_icon else None


def check_prefixes(values: Sequence[str]) -> list[str]:
    """The prefixes as canonical digits, deduplicated, in the order given."""
    prefixes: list[str] = []
    for value in values:
        digits = value.strip().removeprefix("+")
        if not (digits.isascii() and digits.isdigit() and len(digits) <= MAX_PREFIX_DIGITS):
            raise InvalidInput(
                f"prefix {value!r} is not valid: use 1 to {MAX_PREFIX_DIGITS} digits of the "
                "E.164 calling number, e.g. 1215",
                value=value,
            )
        if digits not in prefixes:
            prefixes.append(digits)
    return prefixes


def default_signer(session: Session) -> CertificateEntry | None:
    """The entry that signs the calls no prefix claims, if one is set."""
    query = select(CertificateEntry).where(CertificateEntry.is_default_signer.is_(True))
    return session.scalars(query).first()


def other_entries(session: Session, entry: CertificateEntry) -> Sequence[CertificateEntry]:
    query = select(CertificateEntry).where(CertificateEntry.id != entry.id)
    return session.scalars(query.order_by(CertificateEntry.name)).all()


def _check_prefixes_free(
    session: Session, entry: CertificateEntry, prefixes: Sequence[str]
) -> None:
    for other in other_entries(session, entry):
        taken = sorted(set(prefixes) & set(other.orig_prefixes or ()))
        if taken:
            raise Conflict(
                f"prefix {taken[0]} already belongs to entry {other.name!r}: remove it there "
                f"first (opensti cert set {other.name} --clear-prefixes ...)",
                value=taken[0],
            )


def refuse_default_leaving(entry: CertificateEntry, what: str) -> None:
    raise Conflict(
        f"entry {entry.name!r} is the default signer and cannot be {what}: make another entry "
        f"the default first (opensti cert set OTHER --default-signer), or unset it "
        f"(--no-default-signer)",
        value=entry.name,
    )


def _change_rcd(entry: CertificateEntry, change: RoutingChange, icon_digest: str | None) -> None:
    if change.rcd_name is not None:
        entry.rcd_name = check_rcd_name(change.rcd_name) if change.rcd_name.strip() else None
    if change.new_icon is not None:
        if icon_digest is None:
            raise InvalidInput("the rcd icon's digest is needed with its URL")
        entry.rcd_icon_url, entry.rcd_icon_digest = change.new_icon, icon_digest
    elif change.rcd_icon is not None:
        entry.rcd_icon_url = entry.rcd_icon_digest = None


def change_routing(
    session: Session,
    entry: CertificateEntry,
    change: RoutingChange,
    *,
    icon_digest: str | None = None,
) -> list[str]:
    """Apply ``change`` to ``entry``, all checked first; notes for the operator.
    ``icon_digest`` is the rcdi digest of the logo at ``change.rcd_icon``."""
    notes: list[str] = []
    rcd_name = change.rcd_name
    if rcd_name is not None and rcd_name.strip():
        check_rcd_name(rcd_name)
    prefixes = [] if change.clear_prefixes else list(entry.orig_prefixes or ())
    prefixes += [p for p in check_prefixes(change.add_prefixes) if p not in prefixes]
    attest = check_attest(change.attest)
    enabled = entry.enabled if change.enabled is None else change.enabled
    default = entry.is_default_signer if change.default_signer is None else change.default_signer
    if default and not enabled:
        if entry.is_default_signer:
            refuse_default_leaving(entry, "disabled")
        raise InvalidInput(f"a disabled entry cannot be the default signer ({entry.name!r})")
    _check_prefixes_free(session, entry, prefixes)
    previous = default_signer(session)
    if default and previous is not None and previous.id != entry.id:
        previous.is_default_signer = False
        session.flush()  # before the new default: the unique index sees one at a time
        notes.append(f"entry {previous.name!r} is no longer the default signer")
    if default and not entry.is_default_signer:
        notes.append(f"entry {entry.name!r} is now the default signer: {_DEFAULT_MEANS}")
    if not default and entry.is_default_signer:
        notes.append(
            f"entry {entry.name!r} is no longer the default signer: no entry is, so calls "
            "that no prefix claims are not signed"
        )
    entry.orig_prefixes = prefixes
    entry.is_default_signer = default
    entry.enabled = enabled
    if attest is not None:
        entry.default_attest = attest
    _change_rcd(entry, change, icon_digest)
    session.flush()
    return notes


_DEFAULT_MEANS = "it signs every call that no entry's prefix claims"
