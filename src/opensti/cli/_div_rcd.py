"""``opensti passport sign`` for div and rcd PASSporTs and rcd claims (RFC 8946, 9795).

Kept beside :mod:`opensti.cli.passport` so the SHAKEN path there stays as it was:
this module turns the div/rcd options into a signed token, fetching the icon (under
the x5u fetch rules) to compute its rcdi digest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from opensti.core.call import RCD_PPT
from opensti.core.div import DIV_PPT, DivClaims, sign_div_passport
from opensti.core.errors import BadIdentityInfo, InvalidInput
from opensti.core.passport import PassportSigner, ShakenClaims
from opensti.core.rcd import build_rcd_claims
from opensti.core.tn import canonicalize_tn
from opensti.verification.fetch import FetchPolicy
from opensti.verification.resources import fetch_once

__all__ = ["PPT_TYPES", "RCDOptions", "fetch_resource", "sign_extended"]

PPT_TYPES = ("shaken", DIV_PPT, RCD_PPT)


@dataclass(frozen=True, slots=True)
class RCDOptions:
    name: str | None = None
    icon: str | None = None
    reason: str | None = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.name, self.icon, self.reason))


def fetch_resource(url: str, policy: FetchPolicy) -> bytes:
    """One resource, fetched with the x5u rules (for the CLI: no cache worth keeping)."""
    return asyncio.run(fetch_once(url, policy))


def _rcd_claims(options: RCDOptions, policy: FetchPolicy) -> dict[str, Any]:
    if not options.given:
        return {}
    if options.name is None and options.icon is None:
        raise InvalidInput("--rcd-reason needs --rcd-name or --rcd-icon")
    content = None
    if options.icon is not None:
        try:
            content = fetch_resource(options.icon, policy)
        except BadIdentityInfo as exc:
            raise InvalidInput(f"--rcd-icon: {exc}") from None
    return build_rcd_claims(
        name=options.name, icon=options.icon, icon_content=content, call_reason=options.reason
    )


def sign_extended(
    *,
    ppt: str,
    key: ec.EllipticCurvePrivateKey,
    x5u: str,
    shaken: ShakenClaims | None,
    orig: str,
    dest: Sequence[str],
    iat: int,
    div: str | None,
    rcd: RCDOptions,
    policy: FetchPolicy,
) -> str:
    """The full-form token for ``ppt`` with the div/rcd options; InvalidInput if they
    do not fit the type (``shaken`` is the SHAKEN claims when ``ppt`` is shaken)."""
    if ppt not in PPT_TYPES:
        raise InvalidInput(f"--ppt must be one of {', '.join(PPT_TYPES)}, not {ppt!r}")
    if (div is not None) != (ppt == DIV_PPT):
        raise InvalidInput("--div goes with --ppt div (the number the call was diverted from)")
    if ppt == DIV_PPT:
        if rcd.given:
            raise InvalidInput("rcd options do not go with --ppt div")
        assert div is not None
        claims = DivClaims(orig=orig, dest=tuple(dest), iat=iat, div=canonicalize_tn(div))
        return sign_div_passport(claims, key=key, x5u=x5u)
    extra = _rcd_claims(rcd, policy)
    if ppt == RCD_PPT:
        if not extra:
            raise InvalidInput("--ppt rcd needs --rcd-name or --rcd-icon")
        payload = {"dest": {"tn": list(dest)}, "iat": iat, "orig": {"tn": orig}, **extra}
        return PassportSigner(key, x5u, ppt=RCD_PPT).sign_payload(payload)
    assert shaken is not None
    return PassportSigner(key, x5u).sign_payload({**shaken.to_payload(), **extra})
