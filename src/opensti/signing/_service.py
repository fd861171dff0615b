"""The STI-AS: turn a call's numbers into a signed Identity header.

Per call this canonicalizes the TNs, picks the entry from the keyring snapshot and
signs; nothing touches a database or the disk (the keyring is kept current by whoever
activates certificates), so the cost is one ES256 signature and some JSON.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opensti.core.bounds import check_origid, check_signing_iat
from opensti.core.errors import InvalidInput
from opensti.core.identity import format_identity
from opensti.core.passport import ATTESTATION_LEVELS, ShakenClaims
from opensti.core.tn import canonicalize_tn
from opensti.signing._keyring import Keyring

if TYPE_CHECKING:
    from opensti.signing._extended import SignedDiv

__all__ = ["CallSignerAdapter", "SignedCall", "SigningService"]

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class SignedCall:
    """What signing one call produced, with what the call log records about it."""

    identity: str
    entry: str
    x5u: str
    claims: ShakenClaims
    certificate_id: str | None = None

    @property
    def token(self) -> str:
        return self.identity.split(";", 1)[0]

    @property
    def attest(self) -> str:
        return self.claims.attest

    def to_dict(self) -> dict[str, object]:
        return {
            "identity": self.identity,
            "entry": self.entry,
            "x5u": self.x5u,
            "attest": self.claims.attest,
            "orig": self.claims.orig,
            "dest": list(self.claims.dest),
            "iat": self.claims.iat,
            "origid": self.claims.origid,
        }


#: The variant digit of a random UUID (RFC 9562: bits 10xx) for each random hex digit.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _origid() -> str:
    """A random (version 4) UUID as text: what ``str(uuid.uuid4())`` gives, at a third of
    its cost, which shows on a path that signs thousands of calls a second."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def _dest_tns(dest: str | Sequence[str], nanp: bool = True) -> tuple[str, ...]:
    if isinstance(dest, str):
        return (canonicalize_tn(dest, nanp=nanp),)
    if len(dest) == 1:  # nearly every call: no generator to run
        return (canonicalize_tn(dest[0], nanp=nanp),)
    if not dest:
        raise InvalidInput("at least one called number is needed")
    return tuple([canonicalize_tn(value, nanp=nanp) for value in dest])


class SigningService:
    """Signs calls with the keyring's entries; see :meth:`sign`."""

    def __init__(self, keyring: Keyring, *, clock: Clock = time.time) -> None:
        self.keyring = keyring
        self._clock = clock

    def sign(
        self,
        orig: str,
        dest: str | Sequence[str],
        attest: str | None = None,
        origid: str | None = None,
        entry: str | None = None,
        now: int | None = None,
        rcd: Mapping[str, Any] | None = None,
        nanp: bool = True,
    ) -> SignedCall:
        """Sign a call from ``orig`` to ``dest`` (numbers or tel/sip URIs).

        The entry is ``entry`` by name, else the one with the longest prefix of the
        calling number, else the default; ``attest`` defaults to the entry's. ``now``
        becomes ``iat`` (the request's own time when it gives one). The entry's Rich
        Call Data claims are added, or ``rcd`` (built by
        :func:`~opensti.core.rcd.build_rcd_claims`) instead when given. ``nanp`` is
        the local rule for numbers without a country code (see
        :func:`~opensti.core.tn.canonicalize_tn`). Raises
        :class:`~opensti.core.errors.InvalidInput` for bad numbers or attestation,
        :class:`~opensti.core.errors.NoSigningEntry` and
        :class:`~opensti.core.errors.NoActiveCertificate` when it cannot sign.
        """
        orig_tn = canonicalize_tn(orig, nanp=nanp)
        dest_tns = _dest_tns(dest, nanp)
        chosen, signer = self.keyring.snapshot.select(orig_tn, entry)
        level = attest or chosen.attest
        if level not in ATTESTATION_LEVELS:
            raise InvalidInput(f"attest must be A, B or C, not {level!r}", value=level)
        clock = int(self._clock())
        iat = clock if now is None else check_signing_iat(now, clock)
        check_origid(origid)
        # Positional arguments: this runs for every call, and keywords cost more.
        claims = ShakenClaims(orig_tn, dest_tns, iat, level, origid or _origid())
        branded = chosen.rcd if rcd is None else rcd
        if branded:
            token = signer.sign_payload({**claims.to_payload(), **branded})
        else:
            token = signer.sign(claims)
        x5u = signer.x5u
        identity = format_identity(token, x5u)
        return SignedCall(identity, chosen.name, x5u, claims, chosen.certificate_id)


class CallSignerAdapter:
    """The SIP redirect server's view of the STI-AS (:class:`opensti.sip.CallSigner`):
    numbers in, the signed call out, with what its call log keeps."""

    def __init__(self, service: SigningService) -> None:
        self.service = service

    def sign_call(
        self, orig_tn: str, dest_tns: Sequence[str], attest: str | None, call_id: str | None
    ) -> SignedCall:
        """``call_id`` is accepted for the caller's log; it does not enter the PASSporT.
        The TNs are canonical already, under the SIP policy's NANP rule: signed as
        they are, not put through the rule a second time."""
        return self.service.sign(orig_tn, dest_tns, attest=attest, nanp=False)

    def sign(
        self, orig_tn: str, dest_tns: Sequence[str], attest: str | None, call_id: str | None
    ) -> str:
        return self.sign_call(orig_tn, dest_tns, attest, call_id).identity

    def sign_div(
        self, orig_tn: str, dest_tns: Sequence[str], div_tn: str, call_id: str | None
    ) -> SignedDiv:
        """The div PASSporT (RFC 8946) for a call this operator diverts from ``div_tn``."""
        # Imported here: the div signer builds on this module.
        from opensti.signing._extended import sign_div

        return sign_div(self.service, orig_tn, dest_tns, div_tn, nanp=False)
