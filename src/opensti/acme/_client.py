"""An ACME client for STI-CAs: acme's ``ClientV2`` plus what SHAKEN needs.

acme builds orders from a CSR's DNS names and IPs, insists on a ``Link: rel="up"``
header after a challenge answer, and polls with ``time.sleep`` and naive clocks.
:class:`TNAuthListClientV2` adds TNAuthList orders and a tolerant challenge answer;
:class:`AcmeClient` drives the flow with an injected clock and sleep, honours
``Retry-After``, and turns every failure into an opensti error.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
from acme import client as acme_client
from acme import errors as acme_errors
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.b64 import b64decode, b64encode
from josepy.interfaces import JSONDeSerializable
from josepy.json_util import encode_b64jose
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from opensti.acme._errors import ca_errors, problem_of
from opensti.acme._keys import key_fingerprint, thumbprint_b64
from opensti.acme._messages import (
    IDENTIFIER_TNAUTHLIST,
    TKAuthChallenge,
    TKAuthChallengeResponse,
    TNAuthListNewOrder,
    TNAuthListOrder,
)
from opensti.acme.profiles import CAProfile
from opensti.core.certs import CertificateChain, load_certificate_chain
from opensti.core.errors import InvalidCertificate, InvalidInput, UpstreamError
from opensti.core.passport import load_private_key, require_p256

__all__ = [
    "AcmeAccount",
    "AcmeClient",
    "AcmeOrder",
    "Clock",
    "EABCredentials",
    "Sleep",
    "TNAuthListClientV2",
    "import_account",
    "retry_after_seconds",
    "utc_now",
]

Clock = Callable[[], dt.datetime]
Sleep = Callable[[float], None]

PEM_CHAIN = "application/pem-certificate-chain"
_B64URL_KEY = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_DEFAULT_RETRY = 1.0
_MAX_RETRY = 60.0
_T = TypeVar("_T")
_UNSETTLED = (messages.STATUS_PENDING, messages.STATUS_PROCESSING)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class EABCredentials:
    """External Account Binding key id and MAC key as the CA issued them (RFC 8555 7.3.4)."""

    kid: str
    hmac_key: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.kid.strip():
            raise InvalidInput("the EAB key id (kid) is empty")
        key = self.hmac_key.strip()
        if not _B64URL_KEY.fullmatch(key) or not b64decode(key.rstrip("=")):
            raise InvalidInput(
                "the EAB HMAC key is not base64url (letters, digits, '-' and '_' only)"
            )

    def binding(
        self, account_key: ec.EllipticCurvePrivateKey, directory: messages.Directory
    ) -> dict[str, Any]:
        """The ``externalAccountBinding`` JWS: HS256 over the account's public JWK."""
        return messages.ExternalAccountBinding.from_data(
            account_public_key=JWKEC(key=account_key.public_key()),
            kid=self.kid,
            hmac_key=self.hmac_key.strip().rstrip("="),
            directory=directory,
        )


@dataclass(frozen=True, slots=True)
class AcmeAccount:
    """An account at one CA, with what the STI-PA portal and the store need to know."""

    url: str
    thumbprint: str
    fingerprint: str
    status: str | None = None
    contact: tuple[str, ...] = ()
    terms_of_service: str | None = None


@dataclass(frozen=True, slots=True)
class AcmeOrder:
    url: str
    body: TNAuthListOrder
    authorizations: tuple[messages.AuthorizationResource, ...]

    @property
    def identifier_value(self) -> str:
        return str(self.body.identifiers[0].value)


def retry_after_seconds(value: str | None, now: dt.datetime, default: float) -> float:
    """Seconds to wait per a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return default
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


class _Network(acme_client.ClientNetwork):
    """acme's network with ``verify`` as requests takes it (a bool or a CA bundle path),
    and the JWS variants a CA profile may demand of newAccount and empty payloads."""

    def __init__(
        self,
        key: JWKEC,
        *,
        verify: bool | str,
        timeout: int,
        user_agent: str,
        protected_only: bool = False,
    ):
        super().__init__(key=key, alg=ES256, user_agent=user_agent, timeout=timeout)
        self.verify_ssl = verify  # type: ignore[assignment]
        self._signing_key = key
        self._protected_only = protected_only
        #: Set only while newAccount is sent with a key identifier inside the jwk.
        self.jwk_kid: str | None = None

    def _wrap_in_jws(self, obj: JSONDeSerializable | None, nonce: str, url: str) -> str:
        if self.jwk_kid is None and not (self._protected_only and obj is None):
            return super()._wrap_in_jws(obj, nonce, url)
        return self._profile_jws(obj, nonce, url)

    def _profile_jws(self, obj: JSONDeSerializable | None, nonce: str, url: str) -> str:
        """A flattened JWS that josepy cannot make: a ``kid`` member inside ``jwk``, or an
        empty payload signed over the protected header alone.

        Only the Peeringhub profile asks for either (its ACME reference, "Protocol
        Overview": "If payload is empty: <base64url-encoded header>"; "Account creation
        & Authorization": jwk with "kid"; the PyPI stir-shaken-toolkit 1.0.2 client,
        acme_core/keys.py, signs the same way). Hand-built because josepy's JWS always
        signs RFC 7515's input and has no JWK member for a key id; josepy still does
        the JWK encoding and the ES256 signature.
        """
        header: dict[str, Any] = {"alg": "ES256", "nonce": encode_b64jose(nonce), "url": url}  # type: ignore[arg-type]
        if self.account is not None:
            header["kid"] = self.account["uri"]
        else:
            jwk = self._signing_key.public_key().to_partial_json()
            header["jwk"] = jwk if self.jwk_kid is None else {**jwk, "kid": self.jwk_kid}
        protected = b64encode(json.dumps(header).encode()).decode()
        payload = "" if obj is None else b64encode(obj.json_dumps().encode()).decode()
        signing_input = (
            protected if self._protected_only and not payload else f"{protected}.{payload}"
        )
        signature = b64encode(ES256.sign(self._signing_key.key, signing_input.encode())).decode()
        return json.dumps({"protected": protected, "payload": payload, "signature": signature})


class TNAuthListClientV2(acme_client.ClientV2):
    """``ClientV2`` with TNAuthList orders (RFC 9448) and SHAKEN-tolerant answers."""

    def new_tnauthlist_order(
        self,
        value: str,
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> tuple[str, TNAuthListOrder]:
        """POST newOrder for one TNAuthList identifier; return the order URL and body."""
        order = TNAuthListNewOrder(
            identifiers=[messages.Identifier(typ=IDENTIFIER_TNAUTHLIST, value=value)],
            not_before=not_before,
            not_after=not_after,
        )
        response = self._post(self.directory["newOrder"], order)
        location = response.headers.get("Location")
        if not location:
            raise acme_errors.ClientError("newOrder answer has no Location header")
        return location, TNAuthListOrder.parse(response.json())

    def authorization(self, url: str) -> messages.AuthorizationResource:
        return self._authzr_from_response(self._post_as_get(url), uri=url)

    def answer_challenge(
        self, challb: messages.ChallengeBody, response: Any
    ) -> messages.ChallengeResource:
        """Like ``ClientV2.answer_challenge``, but a missing ``Link: rel="up"`` is fine:
        several STI-CAs omit it, and the authorization URL is known anyway."""
        answer = self._post(challb.uri, response)
        up = answer.links.get("up", {}).get("url", "")
        body = messages.ChallengeBody.from_json(answer.json())
        if body.uri and body.uri != challb.uri:
            raise acme_errors.UnexpectedUpdate(body.uri)
        return messages.ChallengeResource(authzr_uri=up, body=body)

    def post_as_get(self, url: str, **kwargs: Any) -> requests.Response:
        return self._post_as_get(url, **kwargs)

    def post(self, url: str, obj: JSONDeSerializable | None) -> requests.Response:
        return self._post(url, obj)


class AcmeClient:
    """One account key at one CA: register or find the account, then order certificates.

    The clock and sleep are parameters so polling is testable and honours
    ``Retry-After`` without reading the wall clock inside the logic.
    """

    def __init__(
        self,
        profile: CAProfile,
        key: ec.EllipticCurvePrivateKey,
        *,
        staging: bool = False,
        account_url: str | None = None,
        verify: bool | str = True,
        clock: Clock = utc_now,
        sleep: Sleep = time.sleep,
        timeout: int = 30,
        poll_timeout: dt.timedelta = dt.timedelta(minutes=5),
        user_agent: str = "opensti",
    ) -> None:
        require_p256(key)
        self.profile = profile
        self.directory_url = profile.directory_url(staging=staging)
        self.key = key
        self._clock = clock
        self._sleep = sleep
        self._poll_timeout = poll_timeout
        self._net = _Network(
            JWKEC(key=key),
            verify=verify,
            timeout=timeout,
            user_agent=user_agent,
            protected_only=profile.empty_payload_signing == "protected_only",
        )
        self._client: TNAuthListClientV2 | None = None
        if account_url:
            self._use_account(account_url, messages.Registration())

    def __repr__(self) -> str:
        return f"AcmeClient({self.profile.name!r}, {self.directory_url!r})"

    def now(self) -> dt.datetime:
        return self._clock()

    # -- keys ------------------------------------------------------------------------

    @property
    def thumbprint(self) -> str:
        """RFC 7638 thumbprint of the account key, base64url (for display)."""
        return thumbprint_b64(self.key)

    @property
    def fingerprint(self) -> str:
        """The SPC token ``fingerprint`` this CA expects for this account."""
        return key_fingerprint(self.key, self.profile.fingerprint_algorithm)

    @property
    def account_url(self) -> str | None:
        account = self._net.account
        return None if account is None else str(account.uri)

    # -- directory and account ---------------------------------------------------------

    @property
    def client(self) -> TNAuthListClientV2:
        if self._client is None:
            with ca_errors(self.directory_url):
                directory = TNAuthListClientV2.get_directory(self.directory_url, self._net)
            self._client = TNAuthListClientV2(directory, self._net)
        return self._client

    @property
    def terms_of_service(self) -> str | None:
        meta = self.client.directory.meta
        return meta.terms_of_service or self.profile.terms_url

    @property
    def external_account_required(self) -> bool:
        return bool(self.client.external_account_required()) or self.profile.needs_eab

    def register(
        self,
        *,
        email: str | None = None,
        agree_tos: bool = False,
        eab: EABCredentials | None = None,
        key_id: str | None = None,
    ) -> AcmeAccount:
        """Create the account (RFC 8555 7.3), with EAB when the CA requires it.

        A CA that binds accounts by a key identifier inside the jwk (``account_binding``
        "jwk_kid") takes ``key_id`` (or the kid of ``eab``) instead, and no contact.
        Registering a key the CA already knows returns that account, as RFC 8555 does.
        """
        _check_email(email)
        if self.profile.account_binding == "jwk_kid":
            return self._register_with_key_id(key_id or (eab.kid if eab else None))
        client = self.client
        terms = self.terms_of_service
        if terms and not agree_tos:
            raise InvalidInput(f"the CA's terms of service must be agreed to: {terms}")
        if self.external_account_required and eab is None:
            raise InvalidInput(
                f"CA {self.profile.name!r} requires External Account Binding: "
                "give the EAB key id and HMAC key the CA issued"
            )
        with ca_errors(self.directory_url):
            binding = None if eab is None else eab.binding(self.key, client.directory)
            registration = messages.NewRegistration.from_data(
                email=email,
                terms_of_service_agreed=True if agree_tos else None,
                external_account_binding=binding,
            )
            try:
                regr = client.new_account(registration)
            except acme_errors.ConflictError as exc:
                return self._existing(str(exc))
        return self._account(regr)

    def _register_with_key_id(self, key_id: str | None) -> AcmeAccount:
        """newAccount with the key id inside the jwk and an empty payload; the CA answers
        201 with the account, or 200 (possibly empty) for a key it knows."""
        if not key_id or not key_id.strip():
            raise InvalidInput(
                f"CA {self.profile.name!r} binds the account by a key id (kid): give the one "
                "the CA knows your company by"
            )
        client = self.client
        self._net.account = None
        self._net.jwk_kid = key_id.strip()
        try:
            with ca_errors(self.directory_url):
                response = client.post(client.directory["newAccount"], None)
        finally:
            self._net.jwk_kid = None
        url = response.headers.get("Location")
        if not url:
            raise UpstreamError("the CA did not say where the account is (no Location)")
        body = response.json() if response.content else {}
        regr = self._use_account(url, messages.Registration.from_json(body))
        return self._account(regr)

    def find_existing(self) -> AcmeAccount:
        """Look the key's account up with ``onlyReturnExisting`` (import of an account)."""
        client = self.client
        expected = self.account_url
        self._net.account = None
        with ca_errors(self.directory_url):
            response = client.post(
                client.directory["newAccount"],
                messages.NewRegistration(only_return_existing=True),
            )
            url = response.headers.get("Location")
            if not url:
                raise UpstreamError("the CA did not say where the account is (no Location)")
            # Peeringhub answers a known key with an empty 200 and only a Location.
            body = response.json() if response.content else {}
            regr = self._use_account(url, messages.Registration.from_json(body))
        if expected and expected != url:
            raise InvalidInput(
                f"this key belongs to account {url} at the CA, not {expected}", value=expected
            )
        return self._account(regr)

    def _existing(self, url: str) -> AcmeAccount:
        self._use_account(url, messages.Registration())
        return self.find_existing()

    def _use_account(self, url: str, body: messages.Registration) -> messages.RegistrationResource:
        regr = messages.RegistrationResource(uri=url, body=body)
        self._net.account = regr
        return regr

    def _account(self, regr: messages.RegistrationResource) -> AcmeAccount:
        self._net.account = regr
        # Registration.status has no decoder in acme: a str from the wire, a Status if built.
        status = regr.body.status
        return AcmeAccount(
            url=str(regr.uri),
            thumbprint=self.thumbprint,
            fingerprint=self.fingerprint,
            status=None if status is None else str(getattr(status, "name", status)),
            contact=tuple(regr.body.contact or ()),
            terms_of_service=self.terms_of_service,
        )

    def _require_account(self) -> TNAuthListClientV2:
        client = self.client
        if self._net.account is None:
            self.find_existing()
        return client

    # -- orders ------------------------------------------------------------------------

    def new_order(
        self,
        identifier_value: str,
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> AcmeOrder:
        """newOrder for a TNAuthList value; the window is sent only if the CA honours it."""
        client = self._require_account()
        if not self.profile.honours_validity_window:
            not_before = not_after = None
        with ca_errors(self.directory_url):
            url, body = client.new_tnauthlist_order(
                identifier_value, not_before=not_before, not_after=not_after
            )
            authzrs = tuple(client.authorization(u) for u in body.authorizations)
        return AcmeOrder(url=url, body=body, authorizations=authzrs)

    def get_order(self, url: str) -> AcmeOrder:
        """An order placed earlier (its URL kept across a restart), with its authorizations."""
        client = self._require_account()
        with ca_errors(self.directory_url):
            body = TNAuthListOrder.parse(client.post_as_get(url).json())
            authzrs = tuple(client.authorization(u) for u in body.authorizations)
        return AcmeOrder(url=url, body=body, authorizations=authzrs)

    def answer_tkauth(self, order: AcmeOrder, token: str) -> None:
        """Answer each pending authorization's tkauth-01 with the SPC token; wait for valid."""
        client = self._require_account()
        response = TKAuthChallengeResponse.with_token(token, self.profile.tkauth_field)
        authorizations = order.authorizations
        if self.profile.first_authorization_only:
            authorizations = authorizations[:1]
        for authzr in authorizations:
            if authzr.body.status == messages.STATUS_VALID:
                continue
            challb = _tkauth_challenge(authzr)
            with ca_errors(self.directory_url):
                client.answer_challenge(challb, response)
            final = self._poll(
                authzr.uri,
                messages.Authorization.from_json,
                lambda body: body.status not in _UNSETTLED,
                "validating the SPC token",
            )
            if final.status != messages.STATUS_VALID:
                raise _authorization_failure(final)

    def finalize(self, order: AcmeOrder, csr_pem: bytes) -> TNAuthListOrder:
        """Send the CSR once the order is ready; wait until the certificate is issued."""
        client = self._require_account()
        body = self._poll_order(order, (messages.STATUS_READY, messages.STATUS_VALID))
        if body.status == messages.STATUS_READY:
            csr = _load_csr(csr_pem)
            with ca_errors(self.directory_url):
                client.post(body.finalize, messages.CertificateRequest(csr=csr))
            body = self._poll_order(order, (messages.STATUS_VALID,))
        if body.certificate is None:
            raise UpstreamError("the CA marked the order valid but gave no certificate URL")
        return body

    def download_chain(self, certificate_url: str) -> tuple[bytes, CertificateChain]:
        """POST-as-GET the certificate URL as ``application/pem-certificate-chain``."""
        client = self._require_account()
        headers = {"Content-Type": client.net.JOSE_CONTENT_TYPE, "Accept": PEM_CHAIN}
        with ca_errors(self.directory_url):
            response = client.post_as_get(certificate_url, headers=headers)
        pem = response.content
        try:
            return pem, load_certificate_chain(pem)
        except InvalidCertificate as exc:
            raise UpstreamError(f"the CA's certificate chain does not parse: {exc}") from None

    def revoke(self, certificate: x509.Certificate, reason: int = 0) -> None:
        client = self._require_account()
        with ca_errors(self.directory_url):
            client.revoke(certificate, reason)

    # -- polling -----------------------------------------------------------------------

    def _poll_order(self, order: AcmeOrder, wanted: tuple[messages.Status, ...]) -> TNAuthListOrder:
        def settled(body: TNAuthListOrder) -> bool:
            return body.status in (*wanted, messages.STATUS_INVALID)

        body = self._poll(order.url, TNAuthListOrder.parse, settled, "issuing the certificate")
        if body.status == messages.STATUS_INVALID:
            if body.error is not None:
                raise problem_of(body.error)
            raise UpstreamError("the CA marked the order invalid without a problem document")
        return body

    def _poll(
        self, url: str, parse: Callable[[Any], _T], settled: Callable[[_T], bool], what: str
    ) -> _T:
        deadline = self._clock() + self._poll_timeout
        client = self.client
        while True:
            with ca_errors(self.directory_url):
                response = client.post_as_get(url)
                body = parse(response.json())
            if settled(body):
                return body
            now = self._clock()
            delay = retry_after_seconds(response.headers.get("Retry-After"), now, _DEFAULT_RETRY)
            delay = min(delay, _MAX_RETRY)
            if now + dt.timedelta(seconds=delay) > deadline:
                limit = self._poll_timeout.total_seconds()
                raise UpstreamError(f"the CA did not finish {what} within {limit:.0f} s")
            self._sleep(delay)


def import_account(
    profile: CAProfile,
    key_pem: bytes,
    *,
    account_url: str | None = None,
    staging: bool = False,
    **options: Any,
) -> tuple[AcmeClient, AcmeAccount]:
    """An account made elsewhere: its key (PEM, P-256) and, if known, its URL."""
    client = AcmeClient(
        profile, load_private_key(key_pem), staging=staging, account_url=account_url, **options
    )
    return client, client.find_existing()


def _load_csr(pem: bytes) -> x509.CertificateSigningRequest:
    try:
        return x509.load_pem_x509_csr(pem)
    except ValueError:
        raise InvalidInput("not a PEM certificate signing request") from None


def _check_email(email: str | None) -> None:
    if email is not None and not re.fullmatch(r"[^@\s,]+@[^@\s,]+", email):
        raise InvalidInput(f"not an e-mail address: {email!r}", value=email)


def _tkauth_challenge(authzr: messages.AuthorizationResource) -> messages.ChallengeBody:
    for challb in authzr.body.challenges:
        if isinstance(challb.chall, TKAuthChallenge):
            return challb
    offered = ", ".join(str(c.to_partial_json().get("type")) for c in authzr.body.challenges)
    raise UpstreamError(f"the CA offered no tkauth-01 challenge (offered: {offered or 'none'})")


def _authorization_failure(body: messages.Authorization) -> UpstreamError:
    for challb in body.challenges:
        if challb.error is not None:
            return problem_of(challb.error)
    return UpstreamError(f"the CA set the authorization to {body.status.name} without a reason")
