"""STI-AS for diverted calls (RFC 8946 div PASSporT).

Beside :class:`SigningService.sign` (the SHAKEN hot path, which adds an entry's or a
request's Rich Call Data itself): the entry is chosen the same way, by name or by the
calling number's longest prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opensti.core.div import DIV_PPT, DivClaims
from opensti.core.errors import InvalidInput
from opensti.core.identity import format_identity
from opensti.core.tn import canonicalize_tn
from opensti.signing._service import SigningService, _dest_tns

__all__ = ["SignedDiv", "sign_div"]


@dataclass(frozen=True, slots=True)
class SignedDiv:
    identity: str
    entry: str
    x5u: str
    claims: DivClaims
    certificate_id: str | None = None

    @property
    def attest(self) -> None:
        """A div PASSporT carries no attestation."""
        return None


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
    nanp: bool = True,
) -> SignedDiv:
    """The div PASSporT a forwarding provider adds: ``orig`` as received, ``dest`` the
    new target, ``div`` the number the call was diverted from."""
    orig_tn = canonicalize_tn(orig, nanp=nanp)
    chosen, signer = service.keyring.snapshot.select(orig_tn, entry)
    div_tn = canonicalize_tn(div, nanp=nanp)
    claims = DivClaims(orig=orig_tn, dest=_dest_tns(dest, nanp), iat=_iat(service, now), div=div_tn)
    token = signer.sign_as(DIV_PPT, claims.to_payload())
    return SignedDiv(
        identity=format_identity(token, signer.x5u, ppt=DIV_PPT),
        entry=chosen.name,
        x5u=signer.x5u,
        claims=claims,
        certificate_id=chosen.certificate_id,
    )
