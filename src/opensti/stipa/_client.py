"""The STI-PA API client (iconectiv's "STI-PA External API", as public clients use it).

``POST /api/v1/auth/login`` gives an access token, sent raw (no ``Bearer``) in the
``Authorization`` header of ``POST /api/v1/account/{accountId}/token``. A login
answers ``status == "success"`` on success, so HTTP 200 alone is not trusted. Every
token is validated before it is returned, and kept until shortly before its ``exp``.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from opensti.core.certs import load_crl, read_certificates
from opensti.core.errors import (
    InvalidCertificate,
    InvalidInput,
    InvalidSPCToken,
    ServiceUnreachable,
    StiPaRefused,
    UpstreamError,
)
from opensti.core.tnauthlist import TNAuthList
from opensti.stipa._token import (
    DEFAULT_MIN_LIFE,
    SPCToken,
    TokenBundle,
    TokenExpectation,
    TokenTrust,
    validate_spc_token,
)

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MAX_USER_ID_LENGTH",
    "STIPA_PRODUCTION_URL",
    "STIPA_STAGING_URL",
    "StiPaClient",
    "StiPaCredentials",
    "stipa_base_url",
    "token_trust",
]

STIPA_PRODUCTION_URL = "https://authenticate-api.iconectiv.com"
STIPA_STAGING_URL = "https://authenticate-api-stg.iconectiv.com"
#: The limits the STI-PA portal documents: user id < 256, password < 190 characters.
MAX_USER_ID_LENGTH = 255
MAX_PASSWORD_LENGTH = 189
_log = logging.getLogger(__name__)
_MAX_RESPONSE = 1024 * 1024
_DEFAULT_REFRESH_MARGIN = dt.timedelta(minutes=5)

Clock = Callable[[], dt.datetime]


def stipa_base_url(*, staging: bool = False) -> str:
    """The iconectiv STI-PA API (reachable only from allow-listed addresses)."""
    return STIPA_STAGING_URL if staging else STIPA_PRODUCTION_URL


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class StiPaCredentials:
    """An STI-PA API user and the account (primary OCN) its tokens are requested for."""

    account_id: str
    user_id: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.account_id.isascii() or not self.account_id.isalnum():
            raise InvalidInput(
                f"STI-PA account id must be letters and digits: {self.account_id!r}",
                value=self.account_id,
            )
        _check_text(self.user_id, "user id", MAX_USER_ID_LENGTH)
        _check_text(self.password, "password", MAX_PASSWORD_LENGTH)


def _check_text(value: str, what: str, limit: int) -> None:
    if not value:
        raise InvalidInput(f"the STI-PA {what} is empty")
    if len(value) > limit:
        raise InvalidInput(
            f"the STI-PA {what} has {len(value)} characters; the limit is {limit}",
            value=len(value),
        )
    if not value.isprintable():
        raise InvalidInput(f"the STI-PA {what} contains control characters")


@dataclass(frozen=True, slots=True)
class _CacheKey:
    tnauthlist: TNAuthList
    fingerprint: str
    ca: bool


class StiPaClient:
    """Log in, request SPC tokens (validated, cached), and read the CA list and CRL.

    ``trust_anchors`` are the STI-PA certificates (or their roots) that may sign SPC
    tokens. ``verify`` is the TLS verification for every request (a bool, a CA bundle
    path or an SSL context).
    """

    def __init__(
        self,
        credentials: StiPaCredentials,
        *,
        base_url: str = STIPA_PRODUCTION_URL,
        trust_anchors: tuple[x509.Certificate, ...] = (),
        verify: bool | str | ssl.SSLContext = True,
        clock: Clock = _utc_now,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        expected_crl_url: str | None = None,
        min_life: dt.timedelta = DEFAULT_MIN_LIFE,
        refresh_margin: dt.timedelta = _DEFAULT_REFRESH_MARGIN,
        allow_http: bool = False,
    ) -> None:
        if not base_url.startswith("https://") and not (
            allow_http and base_url.startswith("http://")
        ):
            raise InvalidInput(f"the STI-PA base URL must be https: {base_url!r}", value=base_url)
        self.credentials = credentials
        self.base_url = base_url.rstrip("/")
        self.trust_anchors = trust_anchors
        self.expected_crl_url = expected_crl_url
        self._clock = clock
        self._min_life = min_life
        self._refresh_margin = refresh_margin
        self._allow_http = allow_http
        self._http = httpx.Client(
            verify=verify, timeout=timeout, transport=transport, follow_redirects=False
        )
        self._access_token: str | None = None
        self._tokens: dict[_CacheKey, SPCToken] = {}

    def __repr__(self) -> str:
        return f"StiPaClient({self.base_url!r}, account {self.credentials.account_id!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> StiPaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP --------------------------------------------------------------------------

    def _send(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        url = f"{self.base_url}{path}"
        try:
            response = self._http.request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.TimeoutException) as exc:
            raise ServiceUnreachable(f"cannot reach the STI-PA at {self.base_url}: {exc}") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"STI-PA request to {what} failed: {exc}") from None
        if len(response.content) > _MAX_RESPONSE:
            raise UpstreamError(f"the STI-PA answer to {what} is larger than 1 MiB")
        return response

    def _refusal(self, response: httpx.Response, what: str) -> StiPaRefused:
        message = _json_or_none(response)
        detail = message.get("message") if isinstance(message, dict) else None
        text = str(detail) if detail else response.text[:200].strip() or response.reason_phrase
        return StiPaRefused(
            f"STI-PA refused {what}: HTTP {response.status_code}: {text}",
            status=response.status_code,
        )

    def _success(self, response: httpx.Response, what: str) -> dict[str, Any]:
        """The JSON body of a successful call; ``status`` must say ``success``."""
        if response.status_code >= 400:
            raise self._refusal(response, what)
        body = _json_or_none(response)
        if not isinstance(body, dict):
            raise UpstreamError(f"the STI-PA answer to {what} is not a JSON object")
        if body.get("status", "success") != "success":
            detail = body.get("message") or body.get("status")
            raise StiPaRefused(f"STI-PA refused {what}: {detail}", status=response.status_code)
        return body

    # -- login and tokens --------------------------------------------------------------

    def login(self) -> None:
        """POST /api/v1/auth/login; keep the access token for the next calls."""
        what = f"the login of user {self.credentials.user_id!r}"
        response = self._send(
            "POST",
            "/api/v1/auth/login",
            what,
            json={"userId": self.credentials.user_id, "password": self.credentials.password},
        )
        body = self._success(response, what)
        token = body.get("accessToken")
        if not isinstance(token, str) or not token:
            raise UpstreamError("the STI-PA login answer has no accessToken")
        self._access_token = token

    def _authorized(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        """A call with the access token; one fresh login when the STI-PA says 401/403."""
        if self._access_token is None:
            self.login()
        for attempt in (1, 2):
            assert self._access_token is not None
            headers = {"Authorization": self._access_token, "Accept": "application/json"}
            response = self._send(method, path, what, headers=headers, **kwargs)
            if response.status_code not in (401, 403) or attempt == 2:
                return response
            self.login()
        raise AssertionError("unreachable")

    def request_token(
        self,
        tnauthlist: TNAuthList,
        fingerprint: str,
        *,
        padded: bool = True,
        ca: bool = False,
    ) -> SPCToken:
        """An SPC token for ``tnauthlist`` bound to ``fingerprint``, validated, from cache
        while it has more than the refresh margin left."""
        key = _CacheKey(tnauthlist, fingerprint, ca)
        now = self._clock()
        cached = self._tokens.get(key)
        if cached is not None and cached.life_left(now) > self._refresh_margin:
            return cached
        atc = {
            "tktype": "TNAuthList",
            "tkvalue": tnauthlist.to_acme_value(padded=padded),
            "ca": ca,
            "fingerprint": fingerprint,
        }
        account = quote(self.credentials.account_id, safe="")
        what = f"the SPC token request for account {self.credentials.account_id}"
        response = self._authorized(
            "POST", f"/api/v1/account/{account}/token", what, json={"atc": atc}
        )
        body = self._success(response, what)
        raw, crl = body.get("token"), body.get("crl")
        if not isinstance(raw, str) or (crl is not None and not isinstance(crl, str)):
            raise UpstreamError("the STI-PA token answer has no token string")
        try:
            expected = TokenExpectation(
                tnauthlist, fingerprint, ca, self._min_life, self.expected_crl_url
            )
            token = validate_spc_token(
                TokenBundle(raw, crl), expected, trust=self.trust, now=self._clock()
            )
        except InvalidSPCToken as exc:
            raise UpstreamError(f"the STI-PA returned an unusable SPC token: {exc}") from None
        self._tokens[key] = token
        return token

    def clear_cache(self) -> None:
        self._tokens.clear()

    # -- certificates ------------------------------------------------------------------

    @property
    def trust(self) -> TokenTrust:
        return TokenTrust(self.trust_anchors, self.fetch_certificate, self._allow_http)

    def fetch_certificate(self, url: str) -> bytes:
        """GET an x5u (the STI-PA certificate an SPC token names)."""
        return _fetch_certificate(self._http, url)

    def ca_list(self) -> list[x509.Certificate]:
        """GET /api/v1/ca-list: the approved STI-CA roots (PEM bundle or JSON list)."""
        what = "the CA list request"
        response = self._send("GET", "/api/v1/ca-list", what)
        if response.status_code >= 400:
            raise self._refusal(response, what)
        body = _json_or_none(response)
        data = response.content
        if isinstance(body, dict) and isinstance(body.get("certificates"), list):
            data = "".join(str(pem) for pem in body["certificates"]).encode()
        found = read_certificates(data, source="the STI-PA CA list")
        for skipped in found.skipped:
            _log.warning("STI-CA root skipped: %s", skipped.describe())
        if not found.certificates:
            reason = found.skipped[0].reason if found.skipped else "no certificate"
            raise UpstreamError(f"the STI-PA CA list does not parse: {reason}")
        return list(found.certificates)

    def crl(self) -> x509.CertificateRevocationList:
        """GET /download/v1/crl, with its signature checked against the trust anchors."""
        what = "the CRL download"
        response = self._send("GET", "/download/v1/crl", what)
        if response.status_code >= 400:
            raise self._refusal(response, what)
        try:
            crl = load_crl(response.content)
        except InvalidCertificate as exc:
            raise UpstreamError(f"the STI-PA CRL does not parse: {exc}") from None
        if not any(_signed_by(crl, anchor) for anchor in self.trust_anchors):
            raise UpstreamError("the STI-PA CRL is not signed by a trusted STI-PA certificate")
        return crl


def _fetch_certificate(http: httpx.Client, url: str) -> bytes:
    try:
        response = http.get(url)
    except (httpx.ConnectError, httpx.TimeoutException) as exc:
        raise ServiceUnreachable(f"cannot fetch the STI-PA certificate {url}: {exc}") from None
    except httpx.HTTPError as exc:
        raise UpstreamError(f"fetching the STI-PA certificate {url} failed: {exc}") from None
    if response.status_code != 200 or len(response.content) > _MAX_RESPONSE:
        raise UpstreamError(
            f"fetching the STI-PA certificate {url} failed: HTTP {response.status_code}"
        )
    return response.content


def token_trust(
    anchors: tuple[x509.Certificate, ...],
    *,
    verify: bool | str | ssl.SSLContext = True,
    timeout: float = 10.0,
    allow_http: bool = False,
) -> TokenTrust:
    """Trust for tokens brought from elsewhere: no STI-PA login, only the x5u fetch."""

    def fetch(url: str) -> bytes:
        with httpx.Client(verify=verify, timeout=timeout, follow_redirects=False) as http:
            return _fetch_certificate(http, url)

    return TokenTrust(anchors, fetch, allow_http)


def _signed_by(crl: x509.CertificateRevocationList, cert: x509.Certificate) -> bool:
    key = cert.public_key()
    if cert.subject != crl.issuer or not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        return crl.is_signature_valid(key)
    except (InvalidSignature, ValueError, TypeError):
        return False


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
