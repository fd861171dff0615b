"""Kamailio's secsipid still verifies the SHAKEN PASSporT of a call that also carries a
div PASSporT (RFC 8946, signed by an opensti sign listener for a diverted INVITE) or rcd
claims (RFC 9795): the extensions opensti adds do not break the peer."""

from __future__ import annotations

import time
from pathlib import Path

from opensti.core.identity import format_identity, parse_identity
from opensti.core.passport import PassportSigner, ShakenClaims, load_private_key
from opensti.core.rcd import build_rcd_claims
from tests._servers import TLSFiles

from .credentials import Credentials
from .test_kamailio import (  # noqa: F401 (fixtures and markers)
    DEST,
    ORIG,
    OTHER,
    OpenSTI,
    _signed_by_opensti,
    _verifier_setup,
    call,
    kamailio,
    opensti,
    pytestmark,
)


async def test_kamailio_verifies_shaken_beside_div_and_with_rcd(
    tmp_path: Path,
    opensti: OpenSTI,  # noqa: F811
    creds: Credentials,
    tls: TLSFiles,
    x5u: str,
) -> None:
    shaken = await _signed_by_opensti(opensti)
    diversion = ("Diversion", f"<sip:{OTHER}@127.0.0.1;user=phone>;reason=unconditional")
    diverted = await call(opensti.listener("sign"), [("Identity", shaken), diversion])
    div = diverted.single("identity")
    assert parse_identity(div).ppt == "div"

    key = load_private_key(creds.key_pem.read_bytes())
    claims = ShakenClaims(ORIG, (DEST,), int(time.time()), "A", "branded-call")
    payload = {**claims.to_payload(), **build_rcd_claims(name="Example Bank")}
    branded = format_identity(PassportSigner(key, x5u).sign_payload(payload), x5u)

    defines, env = _verifier_setup("x5u", creds, tls)
    async with kamailio(tmp_path, defines, env) as address:
        both = await call(address, [("Identity", shaken), ("Identity", div)])
        rich = await call(address, [("Identity", branded)])
    assert (both.status, both.single("x-secsipid-rc")) == (200, "1"), both
    assert (rich.status, rich.single("x-secsipid-rc")) == (200, "1"), rich
