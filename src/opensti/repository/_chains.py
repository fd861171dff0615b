"""The published chains, held in memory so that serving one never touches the database.

:class:`PublishedChains` is a snapshot of every certificate the store says is published
(active, superseded, or issued and about to become active; not yet expired), replaced
as a whole on :meth:`reload`. A request for an id the snapshot does not know, but
newer than any it knows, triggers a reload at most once per ``miss_reload_interval``:
a certificate another process just activated is then served at once, while a scan of
made-up ids costs no more than one query per interval.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from opensti.store import Certificate, Database, published_certificates

__all__ = ["STI_CR_PATH", "PublishedChain", "PublishedChains", "x5u_for"]

#: Path of the repository under the public base URL.
STI_CR_PATH = "/sti-cr"


def x5u_for(certificate_id: int, public_base_url: str) -> str:
    """The stable URL of one certificate's chain: signing puts it in x5u, we serve it."""
    if certificate_id < 1:
        raise ValueError(f"not a certificate id: {certificate_id}")
    return f"{public_base_url.rstrip('/')}{STI_CR_PATH}/{certificate_id}.pem"


@dataclass(frozen=True, slots=True)
class PublishedChain:
    """One chain as served: the body and the validators derived from it once."""

    certificate_id: int
    body: bytes
    not_after: dt.datetime
    etag: str
    #: Whole seconds, as HTTP dates carry them.
    modified_at: dt.datetime

    @property
    def last_modified(self) -> str:
        return email.utils.format_datetime(self.modified_at, usegmt=True)

    @classmethod
    def from_certificate(cls, cert: Certificate) -> PublishedChain:
        assert cert.chain_pem is not None
        assert cert.not_after is not None
        body = cert.chain_pem.encode("ascii")
        # The body of an id never changes, so any moment up to now is a valid
        # Last-Modified; the start of validity is one every node agrees on.
        modified = (cert.not_before or cert.not_after).astimezone(dt.UTC)
        return cls(
            certificate_id=cert.id,
            body=body,
            not_after=cert.not_after,
            etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
            modified_at=modified.replace(microsecond=0),
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class PublishedChains:
    """A replaceable snapshot of the published chains, loaded from the store."""

    def __init__(
        self,
        database: Database | None,
        *,
        clock: Callable[[], dt.datetime] = _now,
        miss_reload_interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._database = database
        self._clock = clock
        self._monotonic = monotonic
        self._miss_interval = miss_reload_interval
        self._chains: Mapping[int, PublishedChain] = {}
        self._newest_id = 0
        self._last_miss_reload = float("-inf")
        self._reload_lock = threading.Lock()
        #: When the snapshot was last loaded (None: never).
        self.loaded_at: dt.datetime | None = None

    def __len__(self) -> int:
        return len(self._chains)

    @property
    def database(self) -> Database | None:
        return self._database

    def get(self, certificate_id: int) -> PublishedChain | None:
        return self._chains.get(certificate_id)

    def replace(self, certificates: Iterable[Certificate], *, now: dt.datetime) -> None:
        """Install a new snapshot (what :meth:`reload` does with the store's answer)."""
        chains = {
            cert.id: PublishedChain.from_certificate(cert)
            for cert in certificates
            if cert.chain_pem is not None and cert.not_after is not None
        }
        self._chains = chains
        self._newest_id = max(chains, default=0)
        self.loaded_at = now

    def reload(self) -> int:
        """Read the published certificates from the store; returns how many there are."""
        if self._database is None:
            return len(self._chains)
        with self._reload_lock:
            now = self._clock()
            with self._database.read_session() as session:
                self.replace(published_certificates(session, now=now), now=now)
            return len(self._chains)

    def may_reload_for(self, certificate_id: int) -> bool:
        """Whether a miss on this id warrants a reload now (newer than all known, not throttled)."""
        if self._database is None or certificate_id <= self._newest_id:
            return False
        if self._monotonic() - self._last_miss_reload < self._miss_interval:
            return False
        self._last_miss_reload = self._monotonic()
        return True
