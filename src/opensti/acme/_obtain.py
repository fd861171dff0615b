"""The whole acquisition in one call: SPC token, order, tkauth-01, CSR, finalize, chain.

The lifecycle records one event per step and the CLI shows one progress line per
step, so the steps are named (:class:`Step`) and reported through a callback.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from opensti.acme._client import AcmeClient
from opensti.acme._csr import shaken_csr
from opensti.core.certs import CertificateChain, tnauthlist_of
from opensti.core.errors import InvalidInput, InvalidSPCToken, UpstreamError
from opensti.core.tnauthlist import TNAuthList
from opensti.stipa import DEFAULT_MIN_LIFE, SPCToken, TokenExpectation, check_token_claims

__all__ = ["IssuedChain", "Step", "TokenSource", "obtain_certificate"]


class Step(StrEnum):
    SPC_TOKEN = "spc-token"  # noqa: S105  (a step name)
    NEW_ORDER = "new-order"
    CHALLENGE = "tkauth-01"
    FINALIZE = "finalize"
    DOWNLOAD = "download"


class TokenSource(Protocol):
    """Anything that hands out validated SPC tokens (:class:`opensti.stipa.StiPaClient`)."""

    def request_token(
        self, tnauthlist: TNAuthList, fingerprint: str, *, padded: bool = True, ca: bool = False
    ) -> SPCToken: ...


@dataclass(frozen=True, slots=True)
class IssuedChain:
    """A certificate the CA issued, with the key it certifies."""

    spc: str
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    chain_pem: bytes = field(repr=False)
    chain: CertificateChain = field(repr=False)
    order_url: str
    certificate_url: str
    #: RFC 9448 section 7: a public URL of the chain the CA may offer for PASSporT x5u.
    x5u: str | None = None
    crl_url: str | None = None

    @property
    def not_before(self) -> dt.datetime:
        return self.chain.leaf.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.chain.leaf.not_valid_after_utc

    @property
    def serial_number(self) -> int:
        return self.chain.leaf.serial_number


def _ignore(step: Step) -> None:
    return None


def obtain_certificate(
    client: AcmeClient,
    spc: str,
    token: SPCToken | TokenSource,
    *,
    organization: str,
    country: str = "US",
    cert_key: ec.EllipticCurvePrivateKey | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    min_life: dt.timedelta = DEFAULT_MIN_LIFE,
    progress: Callable[[Step], None] = _ignore,
) -> IssuedChain:
    """Get a SHAKEN certificate for ``spc`` from the client's CA.

    ``token`` is a token already validated with :func:`opensti.stipa.validate_spc_token`
    (a token file) or a source such as a :class:`opensti.stipa.StiPaClient`. Without
    ``cert_key`` a new P-256 key is made, unless the CA wants the account key.
    """
    tnauthlist = TNAuthList.for_spc(spc)
    key = _certificate_key(client, cert_key)
    progress(Step.SPC_TOKEN)
    spc_token = _token_for(client, token, tnauthlist, min_life)
    progress(Step.NEW_ORDER)
    order = client.new_order(spc_token.tkvalue, not_before=not_before, not_after=not_after)
    progress(Step.CHALLENGE)
    client.answer_tkauth(order, spc_token.jwt)
    progress(Step.FINALIZE)
    csr = shaken_csr(key, tnauthlist, organization=organization, country=country)
    body = client.finalize(order, csr)
    progress(Step.DOWNLOAD)
    assert body.certificate is not None
    pem, chain = client.download_chain(body.certificate)
    _check_issued(chain, key, tnauthlist)
    return IssuedChain(
        spc=spc,
        key=key,
        chain_pem=pem,
        chain=chain,
        order_url=order.url,
        certificate_url=body.certificate,
        x5u=body.x5u,
        crl_url=spc_token.crl_url,
    )


def _certificate_key(
    client: AcmeClient, cert_key: ec.EllipticCurvePrivateKey | None
) -> ec.EllipticCurvePrivateKey:
    if not client.profile.cert_key_is_account_key:
        return cert_key or ec.generate_private_key(ec.SECP256R1())
    if cert_key is not None and cert_key.public_key() != client.key.public_key():
        raise InvalidInput(
            f"CA {client.profile.name!r} certifies the ACME account key only; "
            "do not give a separate certificate key"
        )
    return client.key


def _token_for(
    client: AcmeClient,
    token: SPCToken | TokenSource,
    tnauthlist: TNAuthList,
    min_life: dt.timedelta,
) -> SPCToken:
    fingerprint = client.fingerprint
    if not isinstance(token, SPCToken):
        return token.request_token(
            tnauthlist, fingerprint, padded=client.profile.padded_identifiers
        )
    if token.signer is None:
        raise InvalidSPCToken("the SPC token has not been validated (use validate_spc_token)")
    check_token_claims(
        token, TokenExpectation(tnauthlist, fingerprint, min_life=min_life), client.now()
    )
    return token


def _check_issued(
    chain: CertificateChain, key: ec.EllipticCurvePrivateKey, tnauthlist: TNAuthList
) -> None:
    """The CA must have certified our key for our SPC; anything else is its mistake."""
    if chain.leaf.public_key() != key.public_key():
        raise UpstreamError("the CA issued a certificate for another key")
    if tnauthlist_of(chain.leaf) != tnauthlist:
        raise UpstreamError("the CA issued a certificate whose TNAuthList is not the one asked")
