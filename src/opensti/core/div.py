"""Diverted calls: the ``div`` PASSporT (RFC 8946, SHAKEN use per ATIS-1000085).

When a provider forwards a call, it signs a PASSporT of type ``div`` beside the
original SHAKEN one: ``orig`` as received, ``dest`` the new target, and ``div`` the
number the call was diverted from (the original dest). A verifier links the
PASSporTs: each ``div.tn`` must be a dest of the previous PASSporT, each ``orig``
the original orig, and the last dest the called number of the request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from opensti.core.errors import DivChainBroken, InvalidIdentityHeader, InvalidOrig
from opensti.core.passport import (
    Passport,
    PassportSigner,
    ShakenClaims,
    _tn_claim,
)

__all__ = ["DIV_PPT", "DivClaims", "div_claims", "link_div_chain", "sign_div_passport"]

DIV_PPT = "div"
#: Diversions followed per call; more is a loop or an attack, not a call.
MAX_DIVERSIONS = 6


@dataclass(frozen=True, slots=True)
class DivClaims:
    """The payload of a div PASSporT (RFC 8946 section 3), TNs canonical."""

    orig: str
    dest: tuple[str, ...]
    iat: int
    div: str
    #: Not in RFC 8946 nor in the deployed ATIS-1000085 examples; kept if a signer adds it.
    origid: str | None = None

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "dest": {"tn": list(self.dest)},
            "div": {"tn": self.div},
            "iat": self.iat,
            "orig": {"tn": self.orig},
        }
        if self.origid is not None:
            payload["origid"] = self.origid
        return payload

    @classmethod
    def diverting(
        cls, original: ShakenClaims, *, new_dest: Sequence[str], div: str, iat: int
    ) -> DivClaims:
        """The div claims for forwarding ``original`` from ``div`` to ``new_dest``."""
        if div not in original.dest:
            raise DivChainBroken(
                f"div {div} is not a dest of the original PASSporT {list(original.dest)}"
            )
        return cls(orig=original.orig, dest=tuple(new_dest), iat=iat, div=div)


def sign_div_passport(claims: DivClaims, *, key: ec.EllipticCurvePrivateKey, x5u: str) -> str:
    """The full-form div PASSporT (the compact form cannot carry ``div``)."""
    return PassportSigner(key, x5u, ppt=DIV_PPT).sign_payload(claims.to_payload())


def _tn_object(payload: Mapping[str, Any], name: str) -> Any:
    value = payload.get(name)
    if not isinstance(value, dict) or "tn" not in value:
        if isinstance(value, dict) and "uri" in value:
            raise InvalidIdentityHeader(f"{name}.uri is not supported; SHAKEN uses TNs")
        raise InvalidIdentityHeader(f"{name} must be an object with a tn")
    return value["tn"]


def div_claims(passport: Passport) -> DivClaims:
    """Check a div PASSporT's header and claims (RFC 8946 section 3); return them."""
    header, payload = passport.header, passport.payload
    if header.get("typ") != "passport" or header.get("alg") != "ES256":
        raise InvalidIdentityHeader("div PASSporT must have typ 'passport' and alg ES256")
    if header.get("ppt") != DIV_PPT:
        raise InvalidIdentityHeader(f"PASSporT ppt must be 'div', not {header.get('ppt')!r}")
    if not isinstance(header.get("x5u"), str):
        raise InvalidIdentityHeader("PASSporT header has no x5u")
    iat = payload.get("iat")
    if not isinstance(iat, int) or isinstance(iat, bool) or iat < 0:
        raise InvalidIdentityHeader(f"iat must be a JSON number of seconds, not {iat!r}")
    try:
        orig = _tn_claim(_tn_object(payload, "orig"), "orig.tn")
    except InvalidIdentityHeader as exc:
        raise InvalidOrig(exc.message) from None
    dest = _tn_object(payload, "dest")
    if not isinstance(dest, list) or not dest:
        raise InvalidIdentityHeader("dest.tn must be a non-empty array")
    # RFC 8946 section 3: div holds one identity (a tn string, not an array).
    div = _tn_claim(_tn_object(payload, "div"), "div.tn")
    origid = payload.get("origid")
    if origid is not None and (not isinstance(origid, str) or not origid):
        raise InvalidIdentityHeader("origid must be a non-empty string")
    return DivClaims(
        orig=orig,
        dest=tuple(_tn_claim(tn, "dest.tn") for tn in dest),
        iat=iat,
        div=div,
        origid=origid,
    )


def link_div_chain(
    base: ShakenClaims, divs: Sequence[DivClaims], request_dest: Sequence[str] | None
) -> list[int]:
    """Order ``divs`` (given in header order) into the chain from ``base`` and return
    the order, or raise :class:`DivChainBroken` with what does not link.

    Each link's ``div`` must be a dest of the previous PASSporT and its ``orig`` the
    base orig (RFC 8946 section 4); the last dest must hold the request's called
    number (None skips that check). Every div PASSporT must be on the chain.
    """
    if len(divs) > MAX_DIVERSIONS:
        raise DivChainBroken(f"more than {MAX_DIVERSIONS} div PASSporTs")
    for claims in divs:
        if claims.orig != base.orig:
            raise DivChainBroken(
                f"div PASSporT orig {claims.orig} is not the original orig {base.orig}"
            )
    order: list[int] = []
    current = base.dest
    remaining = list(range(len(divs)))
    while remaining:
        step = next((i for i in remaining if divs[i].div in current), None)
        if step is None:
            stray = divs[remaining[0]]
            raise DivChainBroken(
                f"div.tn {stray.div} does not match a dest of the previous PASSporT "
                f"{list(current)} (a gap or a mismatch in the div chain)"
            )
        order.append(step)
        remaining.remove(step)
        current = divs[step].dest
    if request_dest is not None and not set(request_dest) & set(current):
        raise DivChainBroken(
            f"the div chain ends at {list(current)}, not at the called number {list(request_dest)}"
        )
    return order
