"""The SHAKEN additions to the ACME message set (RFC 9447, RFC 9448), as acme types.

acme registers challenge types and identifier types by name, so these classes plug
into its parsing: an authorization carrying a ``tkauth-01`` challenge decodes into
:class:`TKAuthChallenge` instead of ``UnrecognizedChallenge``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from acme import challenges, fields, messages
from josepy.json_util import field

__all__ = [
    "IDENTIFIER_TNAUTHLIST",
    "TKAUTH_01",
    "TKAuthChallenge",
    "TKAuthChallengeResponse",
    "TNAuthListNewOrder",
    "TNAuthListOrder",
]

TKAUTH_01 = "tkauth-01"

#: RFC 9448 section 3: the "TNAuthList" identifier type.
IDENTIFIER_TNAUTHLIST = messages.IdentifierType("TNAuthList")


@challenges.Challenge.register
class TKAuthChallenge(challenges.Challenge):
    """RFC 9447 section 3: prove authority with a token from a token authority."""

    typ = TKAUTH_01
    tkauth_type: str = field("tkauth-type", omitempty=True, default="atc")
    token_authority: str | None = field("token-authority", omitempty=True)
    token: str | None = field("token", omitempty=True)


@challenges.ChallengeResponse.register
class TKAuthChallengeResponse(challenges.ChallengeResponse):
    """The SPC token, under ``atc`` (ATIS-1000080, deployed CAs) or ``tkauth`` (RFC 9447)."""

    typ = TKAUTH_01
    atc: str | None = field("atc", omitempty=True)
    tkauth: str | None = field("tkauth", omitempty=True)

    @classmethod
    def with_token(cls, token: str, field: str) -> TKAuthChallengeResponse:
        if field == "tkauth":
            return cls(tkauth=token)
        return cls(atc=token)

    def __repr__(self) -> str:
        # The token is bound to one account, but it is still a credential: keep it out of logs.
        return f"{type(self).__name__}(<SPC token>)"


class TNAuthListNewOrder(messages.NewOrder):
    """A newOrder payload that also carries the requested validity window (RFC 8555 7.4)."""

    not_before: dt.datetime | None = fields.rfc3339("notBefore", omitempty=True)
    not_after: dt.datetime | None = fields.rfc3339("notAfter", omitempty=True)


class TNAuthListOrder(messages.Order):
    """An order as SHAKEN CAs return it: RFC 9448 section 7 adds a public ``x5u``."""

    x5u: str | None = field("x5u", omitempty=True)
    not_before: dt.datetime | None = fields.rfc3339("notBefore", omitempty=True)
    not_after: dt.datetime | None = fields.rfc3339("notAfter", omitempty=True)

    @classmethod
    def parse(cls, jobj: Any) -> TNAuthListOrder:
        order = cls.from_json(jobj)
        assert isinstance(order, TNAuthListOrder)
        return order
