"""The signing entries held in memory, replaced as a whole when a certificate changes.

Readers take :attr:`Keyring.snapshot` once per call and never lock: a snapshot is
immutable, and :meth:`Keyring.replace` builds a new one and swaps the reference (one
attribute store, atomic in CPython), so a call in flight keeps signing with the
entries it started with. Writers serialise among themselves with a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from opensti.core.errors import InvalidInput, NoActiveCertificate, NoSigningEntry
from opensti.core.passport import ATTESTATION_LEVELS, PassportSigner
from opensti.core.tn import canonicalize_tn

__all__ = ["Keyring", "KeyringSnapshot", "SigningEntry"]


@dataclass(frozen=True, slots=True)
class SigningEntry:
    """One certificate entry as the STI-AS sees it: who it signs for and with what.

    ``key`` and ``x5u`` are those of the entry's active certificate; both are None
    while the entry has none (the entry still claims its calls, and signing them is
    refused with :class:`NoActiveCertificate` rather than falling through to another
    entry's certificate).
    """

    name: str
    spc: str
    key: ec.EllipticCurvePrivateKey | None = field(default=None, repr=False)
    x5u: str | None = None
    #: Calling-number prefixes (canonical digits) this entry signs for.
    prefixes: tuple[str, ...] = ()
    #: Signs every call no prefix of any entry claims.
    is_default: bool = False
    #: Attestation used when the request does not give one.
    attest: str = "C"
    #: The certificate's id in the store, recorded with each signed call.
    certificate_id: str | None = None
    #: Rich Call Data claims (``rcd``, ``rcdi``; RFC 9795) added to every SHAKEN
    #: PASSporT this entry signs, built once from the entry's settings.
    rcd: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.attest not in ATTESTATION_LEVELS:
            raise InvalidInput(f"entry {self.name}: attest must be A, B or C", value=self.attest)
        if (self.key is None) != (self.x5u is None):
            raise InvalidInput(f"entry {self.name}: an active certificate needs key and x5u")


@dataclass(frozen=True, slots=True)
class _Loaded:
    entry: SigningEntry
    signer: PassportSigner | None


def _prefix(entry: SigningEntry, prefix: str) -> str:
    try:
        return canonicalize_tn(prefix, nanp=False)
    except InvalidInput:
        raise InvalidInput(f"entry {entry.name}: prefix {prefix!r} is not digits") from None


class KeyringSnapshot:
    """An immutable view of every entry, with the lookups the hot path needs."""

    __slots__ = ("_by_name", "_by_prefix", "_default", "_lengths")

    def __init__(self, entries: Iterable[SigningEntry]) -> None:
        by_name: dict[str, _Loaded] = {}
        by_prefix: dict[str, _Loaded] = {}
        default: _Loaded | None = None
        for entry in entries:
            if entry.name in by_name:
                raise InvalidInput(f"two signing entries are named {entry.name!r}")
            signer = PassportSigner(entry.key, entry.x5u) if entry.key and entry.x5u else None
            loaded = _Loaded(entry, signer)
            by_name[entry.name] = loaded
            for prefix in entry.prefixes:
                digits = _prefix(entry, prefix)
                if digits in by_prefix:
                    raise InvalidInput(f"prefix {digits} belongs to two entries", value=digits)
                by_prefix[digits] = loaded
            if entry.is_default:
                if default is not None:
                    raise InvalidInput("only one signing entry can be the default")
                default = loaded
        self._by_name: Mapping[str, _Loaded] = by_name
        self._by_prefix: Mapping[str, _Loaded] = by_prefix
        self._default = default
        self._lengths = tuple(sorted({len(p) for p in by_prefix}, reverse=True))

    @property
    def entries(self) -> tuple[SigningEntry, ...]:
        return tuple(loaded.entry for loaded in self._by_name.values())

    def problems(self) -> tuple[str, ...]:
        """Why calls would go unsigned, in words (``opensti serve`` logs them at start and
        ``/health`` reports them); empty when every call has an entry with a certificate."""
        if not self._by_name:
            return ("no enabled signing entry: no call is signed (opensti cert add ...)",)
        found = []
        if self._default is None:
            unsigned = (
                "no call is" if not self._by_prefix else "calls that no prefix claims are not"
            )
            found.append(
                f"no entry is the default signer: {unsigned} signed "
                "(opensti cert set NAME --default-signer)"
            )
        for loaded in self._by_name.values():
            entry = loaded.entry
            claims = entry.is_default or entry.prefixes
            if claims and loaded.signer is None:
                found.append(
                    f"entry {entry.name!r} has no active certificate: its calls are not signed "
                    f"(opensti cert request {entry.name})"
                )
        return tuple(found)

    def _choose(self, orig: str, name: str | None) -> _Loaded:
        if name is not None:
            loaded = self._by_name.get(name)
            if loaded is None:
                raise NoSigningEntry(f"no signing entry is named {name!r}", value=name)
            return loaded
        for length in self._lengths:
            loaded = self._by_prefix.get(orig[:length])
            if loaded is not None:
                return loaded
        if self._default is None:
            raise NoSigningEntry(f"no signing entry covers calling number {orig}", value=orig)
        return self._default

    def select(self, orig: str, name: str | None = None) -> tuple[SigningEntry, PassportSigner]:
        """The entry for a call from ``orig`` (canonical): by name, longest prefix, default."""
        loaded = self._choose(orig, name)
        if loaded.signer is None:
            raise NoActiveCertificate(
                f"signing entry {loaded.entry.name!r} has no active certificate",
                value=loaded.entry.name,
            )
        return loaded.entry, loaded.signer


class Keyring:
    """The current :class:`KeyringSnapshot`, swapped whole by :meth:`replace`."""

    def __init__(self, entries: Iterable[SigningEntry] = ()) -> None:
        self._write_lock = threading.Lock()
        self.snapshot = KeyringSnapshot(entries)
        #: Bumped on every swap, so holders of derived state can tell it is stale.
        self.generation = 0

    def replace(self, entries: Iterable[SigningEntry]) -> None:
        """Install a new set of entries; a bad set raises and leaves the old one in place."""
        snapshot = KeyringSnapshot(entries)
        with self._write_lock:
            self.snapshot = snapshot
            self.generation += 1

    def upsert(self, entry: SigningEntry) -> None:
        """Install or replace one entry (e.g. when its new certificate becomes active)."""
        with self._write_lock:
            others = [e for e in self.snapshot.entries if e.name != entry.name]
            self.snapshot = KeyringSnapshot([*others, entry])
            self.generation += 1

    def __len__(self) -> int:
        return len(self.snapshot.entries)
