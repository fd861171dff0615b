"""STI-AS for diverted calls (RFC 8946 div PASSporT) and branded calls (RFC 9795 rcd).

Beside :class:`SigningService.sign` (the SHAKEN hot path, left as it is): the entry
is chosen the same way, by name or by the calling number's longest prefix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opensti.core.div import DIV_PPT, DivClaims
from opensti.core.errors import InvalidInput
from opensti.core.identity import format_identity
from opensti.core.tn import canonicalize_tn
from opensti.signing._service import SignedCall, SigningService, _dest_tns

__all__ = ["SignedDiv", "sign_branded", "sign_div"]


@dataclass(frozen=True, slots=True)
class SignedDiv:
    identity: str
    entry: str
    x5u: str
    claims: DivClaims


def _iat(service: SigningService, now: int | None) -> int:
    iat = int(service._clock()) if now is None else now
    if isinstance(iat, bool) or not isinstance(iat, int) or iat < 0:
        raise InvalidInput(f"iat must be a whole number of seconds, not {iat!r}", value=iat)
    return iat


def sign_div(
    service: SigningService,
    orig: str,
    dest: str | Sequence[str],
    div: str,
    *,
    entry: str | None = None,
    now: int | None = None,
) -> SignedDiv:
    """The div PASSporT a forwarding provider adds: ``orig`` as received, ``dest`` the
    new target, ``div`` the number the call was diverted from."""
    orig_tn = canonicalize_tn(orig)
    chosen, signer = service.keyring.snapshot.select(orig_tn, entry)
    claims = DivClaims(
        orig=orig_tn, dest=_dest_tns(dest), iat=_iat(service, now), div=canonicalize_tn(div)
    )
    token = signer.sign_as(DIV_PPT, claims.to_payload())
    return SignedDiv(
        identity=format_identity(token, signer.x5u, ppt=DIV_PPT),
        entry=chosen.name,
        x5u=signer.x5u,
        claims=claims,
    )


def sign_branded(signed: SignedCall, service: SigningService, rcd: Mapping[str, Any]) -> SignedCall:
    """``signed`` re-signed with rcd claims (RFC 9795) added to its SHAKEN payload."""
    _, signer = service.keyring.snapshot.select(signed.claims.orig, signed.entry)
    token = signer.sign_as("shaken", {**signed.claims.to_payload(), **rcd})
    return SignedCall(
        identity=format_identity(token, signer.x5u),
        entry=signed.entry,
        x5u=signer.x5u,
        claims=signed.claims,
        certificate_id=signed.certificate_id,
    )
