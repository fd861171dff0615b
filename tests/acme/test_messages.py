"""The SHAKEN ACME messages: tkauth-01, its two response spellings, TNAuthList orders."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from acme import messages

from opensti.acme import (
    IDENTIFIER_TNAUTHLIST,
    TKAuthChallenge,
    TKAuthChallengeResponse,
    TNAuthListNewOrder,
    TNAuthListOrder,
)

VECTORS = Path(__file__).parent.parent / "vectors" / "acme"


def test_authorization_with_tkauth_challenge_parses() -> None:
    jobj = json.loads((VECTORS / "digest-authorization.json").read_text())
    authz = messages.Authorization.from_json(jobj)
    assert authz.identifier.typ == IDENTIFIER_TNAUTHLIST
    assert authz.identifier.value == "MAigBhYEMTIzNA"
    (challb,) = authz.challenges
    assert isinstance(challb.chall, TKAuthChallenge)
    assert challb.uri == "https://ca.example.com/acme/chall/prV_B7yEyA4"
    assert challb.chall.tkauth_type == "atc"
    assert challb.chall.token_authority == "https://authority.example.org"
    assert challb.chall.token == "IlirfxKKXAsHtmzK29Pj8A"


@pytest.mark.parametrize("field", ["atc", "tkauth"])
def test_challenge_response_uses_the_profile_field(field: str) -> None:
    response = TKAuthChallengeResponse.with_token("h.p.s", field)
    assert response.to_partial_json() == {field: "h.p.s"}


def test_challenge_response_repr_hides_the_token() -> None:
    assert "h.p.s" not in repr(TKAuthChallengeResponse.with_token("h.p.s", "atc"))


def test_new_order_carries_identifier_and_validity_window() -> None:
    order = TNAuthListNewOrder(
        identifiers=[messages.Identifier(typ=IDENTIFIER_TNAUTHLIST, value="MAigBhYEMTIzNA==")],
        not_before=dt.datetime(2021, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2021, 1, 8, tzinfo=dt.UTC),
    )
    assert json.loads(order.json_dumps()) == {
        "identifiers": [{"type": "TNAuthList", "value": "MAigBhYEMTIzNA=="}],
        "notBefore": "2021-01-01T00:00:00Z",
        "notAfter": "2021-01-08T00:00:00Z",
    }


def test_new_order_without_window_sends_only_identifiers() -> None:
    order = TNAuthListNewOrder(
        identifiers=[messages.Identifier(typ=IDENTIFIER_TNAUTHLIST, value="MAigBhYEMTIzNA")]
    )
    assert set(json.loads(order.json_dumps())) == {"identifiers"}


def test_order_keeps_the_rfc9448_x5u() -> None:
    order = TNAuthListOrder.parse(
        {
            "status": "valid",
            "identifiers": [{"type": "TNAuthList", "value": "MAigBhYEMTIzNA"}],
            "authorizations": ["https://ca.example.com/authz/1"],
            "finalize": "https://ca.example.com/order/1/finalize",
            "certificate": "https://ca.example.com/cert/1",
            "x5u": "https://cr.example.com/cert/1.pem",
        }
    )
    assert order.status == messages.STATUS_VALID
    assert order.x5u == "https://cr.example.com/cert/1.pem"
    assert order.certificate == "https://ca.example.com/cert/1"
