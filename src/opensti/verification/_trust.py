"""The STI-PA trust list and CRLs, loaded from files or URLs and refreshed.

The current :class:`~opensti.core.certs.TrustContext` is one immutable object swapped
on change, with a :attr:`TrustStore.version` that validated-chain caches compare to,
so a new CRL or trust list applies to chains validated before it arrived.

Anchors are read one certificate at a time: one that cannot be used is skipped with a
warning naming it (subject, SHA-256) and why, and counted; only a list with nothing
usable left is an error, and even then the service keeps running (every call then
fails with 437) and a refresh keeps the last good list.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from opensti.core.certs import (
    CertificateSet,
    SkippedCertificate,
    TrustContext,
    load_crl,
    read_trust_anchors,
)
from opensti.core.errors import InvalidCertificate, OpenSTIError, UpstreamError

__all__ = ["Fetch", "HTTPGet", "TrustStore", "no_usable_anchor", "read_anchor_path"]

_log = logging.getLogger(__name__)

#: Reads one URL and returns the body; raises an :class:`OpenSTIError` on failure.
Fetch = Callable[[str], Awaitable[bytes]]


class HTTPGet:
    """GET for the operator's own configured URLs (STI-PA trust list and CRL).

    These URLs come from configuration, not from calls, so they do not go through the
    x5u fetcher's address checks; they still get timeouts and a size cap.
    """

    def __init__(
        self, *, verify: bool | str | os.PathLike[str] = True, timeout: float = 10.0
    ) -> None:
        context: ssl.SSLContext | bool = (
            verify
            if isinstance(verify, bool)
            else (ssl.create_default_context(cafile=os.fspath(verify)))
        )
        self._client = httpx.AsyncClient(timeout=timeout, verify=context)
        self.max_bytes = 16 * 1024 * 1024

    async def __call__(self, url: str) -> bytes:
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"cannot fetch {url}: {exc}", value=url) from None
        if response.status_code != 200:
            raise UpstreamError(f"{url} answered HTTP {response.status_code}", value=url)
        if len(response.content) > self.max_bytes:
            raise UpstreamError(f"{url} sent more than {self.max_bytes} bytes", value=url)
        return response.content

    async def aclose(self) -> None:
        await self._client.aclose()


def _is_url(source: str | Path) -> bool:
    return isinstance(source, str) and source.lower().startswith(("https://", "http://"))


def _unreadable(path: Path, exc: OSError) -> CertificateSet:
    reason = f"cannot read the file: {exc.strerror or exc}"
    return CertificateSet(skipped=(SkippedCertificate(reason, source=str(path)),))


def read_anchor_path(source: Path) -> CertificateSet:
    """The trust anchors of a PEM/DER file, or of every file in a directory, each
    certificate on its own (see :func:`opensti.core.certs.read_trust_anchors`)."""
    try:
        files = sorted(p for p in source.iterdir() if p.is_file()) if source.is_dir() else [source]
    except OSError as exc:
        return _unreadable(source, exc)
    found = CertificateSet()
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            found += _unreadable(path, exc)
            continue
        found += read_trust_anchors([(str(path), data)])
    return found


def no_usable_anchor(found: CertificateSet, where: str) -> InvalidCertificate:
    """The one-line error for a trust list with nothing usable left."""
    first = f": {found.skipped[0].describe()}" if found.skipped else ""
    more = f" (and {len(found.skipped) - 1} more skipped)" if len(found.skipped) > 1 else ""
    return InvalidCertificate(f"no usable trust anchor in {where}{first}{more}")


def _signed_by(crl: x509.CertificateRevocationList, signers: Sequence[x509.Certificate]) -> bool:
    for cert in signers:
        key = cert.public_key()
        if cert.subject != crl.issuer or not isinstance(key, ec.EllipticCurvePublicKey):
            continue
        try:
            if crl.is_signature_valid(key):
                return True
        except (InvalidSignature, ValueError, TypeError):
            continue
    return False


class TrustStore:
    """Trust anchors (STI-CA roots), CRLs by URL, and the certs allowed to sign CRLs."""

    def __init__(
        self,
        anchors: Sequence[x509.Certificate] = (),
        *,
        source: str | Path | None = None,
        crl_urls: Sequence[str] = (),
        crl_signers: Sequence[x509.Certificate] = (),
        policy_oids: frozenset[str] | None = None,
        fetch: Fetch | None = None,
        crl_retry: float = 300.0,
        allow_rsa_ca: bool = True,
    ) -> None:
        self.source = source
        self.crl_urls = tuple(crl_urls)
        self._anchors = tuple(anchors)
        #: The last trust list installed: its anchors and what was skipped, and why.
        self.anchor_set = CertificateSet(self._anchors)
        self._signers = tuple(crl_signers)
        self._policy_oids = policy_oids
        self._allow_rsa_ca = allow_rsa_ca
        self._fetch = fetch
        self._crls: dict[str, x509.CertificateRevocationList] = {}
        #: When each CRL URL is due again (its nextUpdate, or a retry after a failure).
        self._crl_due: dict[str, float] = dict.fromkeys(self.crl_urls, 0.0)
        #: The earliest of them: every call asks, so it is kept rather than searched.
        self._next_crl_due = min(self._crl_due.values(), default=float("inf"))
        self._crl_retry = crl_retry
        self.version = 0
        self.last_error: OpenSTIError | None = None
        self.context = TrustContext(anchors=(), crl_signers=self._signers)
        self._publish()
        local = source is not None and not _is_url(source)
        if local and not self._install(read_anchor_path(Path(str(source))), str(source)):
            assert self.last_error is not None
            _log.error("%s", self.last_error.message)

    @property
    def anchors_loaded(self) -> int:
        return len(self._anchors)

    @property
    def anchors_skipped(self) -> tuple[SkippedCertificate, ...]:
        return self.anchor_set.skipped

    def _publish(self) -> None:
        self.context = TrustContext(
            anchors=self._anchors,
            crls=tuple(self._crls.values()),
            crl_signers=self._signers,
            policy_oids=self._policy_oids,
            signed=self.anchor_set.signed,
            allow_rsa_ca=self._allow_rsa_ca,
        )
        self.version += 1

    def _install(self, found: CertificateSet, where: str) -> bool:
        """Use ``found`` if it holds an anchor (else keep the list in force); log what
        was skipped once per change, so a refresh does not repeat it."""
        if found.skipped != self.anchor_set.skipped:
            for skipped in found.skipped:
                _log.warning("trust anchor skipped: %s", skipped.describe())
        if not found.certificates:
            self.last_error = no_usable_anchor(found, where)
            if not self._anchors:
                self.anchor_set = found
            return False
        if found.certificates != self._anchors or found.skipped != self.anchor_set.skipped:
            self._anchors = found.certificates
            self.anchor_set = found
            self._publish()
        return True

    async def _read(self, url: str) -> bytes:
        if self._fetch is None:
            raise UpstreamError(f"no fetcher configured for {url}", value=url)
        return await self._fetch(url)

    async def refresh(self) -> None:
        """Reload the trust list from its source (file, directory or URL).

        A source that fails or holds no certificate leaves the current anchors in place
        and raises: an empty trust list would fail every call.
        """
        if self.source is None:
            return
        where = str(self.source)
        if _is_url(self.source):
            found = read_trust_anchors([(where, await self._read(where))])
        else:
            found = read_anchor_path(Path(self.source))
        if not self._install(found, where):
            assert self.last_error is not None
            raise self.last_error

    def add_crl(self, url: str, crl: x509.CertificateRevocationList) -> None:
        """Install a CRL (refused unless a known signer signed it)."""
        if not _signed_by(crl, (*self._signers, *self._anchors)):
            raise InvalidCertificate(f"the CRL from {url} is not signed by a known CRL signer")
        self._crls[url] = crl
        next_update = crl.next_update_utc
        self._set_due(url, next_update.timestamp() if next_update else float("inf"))
        self._publish()

    def _set_due(self, url: str, when: float) -> None:
        self._crl_due[url] = when
        self._next_crl_due = min(self._crl_due.values())

    def crl_due(self, now: float) -> bool:
        return now >= self._next_crl_due

    async def refresh_crls(self, now: float, *, force: bool = False) -> bool:
        """Fetch every CRL that is due (past nextUpdate); True if all are current.

        A failed fetch keeps the previous CRL (a stale list beats none) and is retried
        after ``crl_retry`` seconds; the error is kept in :attr:`last_error`.
        """
        current = True
        for url in self.crl_urls:
            if not force and now < self._crl_due.get(url, 0.0):
                continue
            try:
                self.add_crl(url, load_crl(await self._read(url)))
            except OpenSTIError as error:
                self.last_error = error
                self._set_due(url, now + self._crl_retry)
                current = False
        return current

    def crl(self, url: str) -> x509.CertificateRevocationList | None:
        return self._crls.get(url)
