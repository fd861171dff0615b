"""The sandbox STI-CA: an ACME server (RFC 8555) with External Account Binding and the
Authority Token challenge ``tkauth-01`` for ``TNAuthList`` identifiers (RFC 9447/9448).

Paths (all under ``/acme/``): ``directory``, ``new-nonce``, ``new-account``,
``account/{id}`` (+ ``/orders``), ``new-order``, ``order/{id}``, ``authz/{id}``,
``chall/{id}``, ``finalize/{id}``, ``cert/{id}``, ``revoke-cert``, ``key-change``.

Validation is synchronous: a challenge answered with an SPC token is ``valid`` or
``invalid`` (with its problem document in ``error``) in the response to that POST, and
finalize returns the order already ``valid``. Clients that poll still work.
"""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from josepy.jwk import JWK
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from opensti.core.errors import InvalidTNAuthList
from opensti.core.tnauthlist import TNAUTHLIST_OID, TNAuthList
from opensti.sandbox.jws import FlattenedJWS, b64url_decode, parse_jwk, verify_eab
from opensti.sandbox.pki import SHAKEN_POLICY_OID, issue_shaken_certificate, to_pem
from opensti.sandbox.problems import Problem
from opensti.sandbox.state import Sandbox
from opensti.sandbox.store import (
    Account,
    Authorization,
    Certificate,
    Challenge,
    EABKey,
    Order,
)
from opensti.sandbox.tokens import ExpectedToken, account_fingerprint, validate_spc_token

__all__ = ["JOSE_CONTENT_TYPE", "PEM_CHAIN_CONTENT_TYPE", "acme_routes"]

JOSE_CONTENT_TYPE = "application/jose+json"
PEM_CHAIN_CONTENT_TYPE = "application/pem-certificate-chain"
_MAX_BODY = 64 * 1024
_ORDER_LIFETIME = dt.timedelta(days=1)
_REVOCATION_REASONS = frozenset({0, 1, 3, 4, 5, 9})
_T = TypeVar("_T")


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sandbox(request: Request) -> Sandbox:
    sandbox: Sandbox = request.app.state.sandbox
    return sandbox


def _jwk_of(account: Account) -> JWK:
    return parse_jwk(account.jwk)


def _thumbprint(jwk: JWK) -> str:
    return bytes(jwk.public_key().thumbprint()).hex()


@dataclass
class SignedRequest:
    """A request whose JWS, url and nonce passed; ``account`` is None only for jwk."""

    jws: FlattenedJWS
    jwk: JWK
    account: Account | None
    url: str

    @property
    def post_as_get(self) -> bool:
        return self.jws.payload_b64 == ""

    def payload(self) -> dict[str, Any]:
        if self.post_as_get:
            raise Problem("malformed", "this request needs a JSON payload")
        return self.jws.payload_json()

    def require_account(self) -> Account:
        if self.account is None:
            raise Problem("malformed", "this request must be signed with kid, not jwk")
        return self.account


async def _read_jws(request: Request) -> FlattenedJWS:
    if request.headers.get("content-type", "").split(";")[0].strip() != JOSE_CONTENT_TYPE:
        raise Problem("malformed", f"Content-Type must be {JOSE_CONTENT_TYPE}", status=415)
    body = await request.body()
    if len(body) > _MAX_BODY:
        raise Problem("malformed", "request body too large", status=413)
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Problem("malformed", "request body is not JSON") from None
    return FlattenedJWS.parse(document)


async def authenticate(request: Request, *, key: str = "kid") -> SignedRequest:
    """RFC 8555 section 6.2-6.5; ``key`` is "kid", "jwk" or "either" (revokeCert)."""
    sandbox = _sandbox(request)
    jws = await _read_jws(request)
    url = sandbox.urls.base + request.url.path
    if jws.header.get("url") != url:
        raise Problem("unauthorized", f"JWS url header must be {url}")
    has_jwk, has_kid = "jwk" in jws.header, "kid" in jws.header
    if has_jwk == has_kid:
        raise Problem("malformed", "the protected header needs exactly one of jwk and kid")
    if has_jwk and key == "kid":
        raise Problem("malformed", "this request must be signed with kid (the account URL)")
    if has_kid and key == "jwk":
        raise Problem("malformed", "newAccount must be signed with jwk")
    account = _account_by_kid(sandbox, jws.header["kid"]) if has_kid else None
    jwk = _jwk_of(account) if account else parse_jwk(jws.header["jwk"])
    jws.verify(jwk, protected_only=sandbox.config.profile.empty_payload_signature != "rfc7515")
    if not sandbox.nonces.consume(jws.header.get("nonce")):
        raise Problem("badNonce", "the nonce is missing, unknown or already used")
    return SignedRequest(jws, jwk, account, url)


def _account_by_kid(sandbox: Sandbox, kid: Any) -> Account:
    prefix = sandbox.urls.acme("account/")
    if not isinstance(kid, str) or not kid.startswith(prefix):
        raise Problem("accountDoesNotExist", "kid is not an account URL of this CA")
    with sandbox.store.session() as session:
        account = session.get(Account, kid[len(prefix) :])
    if account is None:
        raise Problem("accountDoesNotExist", "no account at this kid")
    if account.status != "valid":
        raise Problem("unauthorized", f"account is {account.status}")
    return account


def _json(
    body: dict[str, Any] | list[Any],
    status: int = 200,
    *,
    location: str | None = None,
    up: str | None = None,
) -> JSONResponse:
    headers = {}
    if location:
        headers["Location"] = location
    if up:
        headers["Link"] = f'<{up}>;rel="up"'
    return JSONResponse(body, status, headers=headers)


# Directory and nonces


async def directory(request: Request) -> Response:
    sandbox = _sandbox(request)
    urls = sandbox.urls
    profile = sandbox.config.profile
    return JSONResponse(
        {
            "newNonce": urls.acme("new-nonce"),
            "newAccount": urls.acme("new-account"),
            "newOrder": urls.acme("new-order"),
            "revokeCert": urls.acme("revoke-cert"),
            "keyChange": urls.acme("key-change"),
            "meta": {
                # A kid inside jwk (Peeringhub) is not RFC 8555's EAB.
                "externalAccountRequired": profile.eab_required
                and profile.account_binding == "eab",
                "website": urls.base,
                "profile": profile.name,
            },
        }
    )


async def new_nonce(request: Request) -> Response:
    # The nonce itself is added to every /acme response by the app's middleware.
    return Response(status_code=200 if request.method == "HEAD" else 204)


# Accounts


def _account_json(sandbox: Sandbox, account: Account) -> dict[str, Any]:
    return {
        "status": account.status,
        "contact": account.contact.get("contact", []),
        "orders": sandbox.urls.acme(f"account/{account.id}/orders"),
    }


def _account_url(sandbox: Sandbox, account: Account) -> str:
    return sandbox.urls.acme(f"account/{account.id}")


def _contact(payload: dict[str, Any]) -> list[str]:
    contact = payload.get("contact", [])
    if not isinstance(contact, list) or not all(isinstance(c, str) for c in contact):
        raise Problem("malformed", "contact must be a list of URLs")
    if any(not c.startswith("mailto:") for c in contact):
        raise Problem("unsupportedContact", "only mailto: contacts are supported")
    return contact


async def new_account(request: Request) -> Response:
    sandbox = _sandbox(request)
    profile = sandbox.config.profile
    signed = await authenticate(request, key="jwk")
    key_binding = profile.account_binding == "jwk_kid"
    # Peeringhub's newAccount has an empty payload; elsewhere RFC 8555 wants an object.
    payload = {} if key_binding and signed.post_as_get else signed.payload()
    thumbprint = _thumbprint(signed.jwk)
    with sandbox.store.session() as session:
        existing = session.scalar(select(Account).where(Account.thumbprint == thumbprint))
    if existing is not None:
        url = _account_url(sandbox, existing)
        if key_binding:
            # Peeringhub: "an empty 200 OK reply with the ACME Account URL in Location".
            return Response(status_code=200, headers={"Location": url})
        return _json(_account_json(sandbox, existing), location=url)
    if payload.get("onlyReturnExisting") is True:
        raise Problem("accountDoesNotExist", "no account exists for this key")
    contact = _contact(payload)
    binding = payload.get("externalAccountBinding")
    key_id = _jwk_key_id(signed, required=profile.eab_required) if key_binding else None
    if not key_binding and binding is None and profile.eab_required:
        raise Problem("externalAccountRequired", "this CA requires externalAccountBinding")
    with sandbox.store.session() as session:
        account = Account(
            jwk=signed.jwk.public_key().to_json(),
            thumbprint=thumbprint,
            contact={"contact": contact},
        )
        session.add(account)
        session.flush()
        if key_id is not None:
            account.eab_kid = _bind_key_id(session, key_id, account.id, profile.eab_required)
        elif binding is not None:
            account.eab_kid = _bind_eab(session, binding, signed, account.id)
    return _json(_account_json(sandbox, account), 201, location=_account_url(sandbox, account))


def _jwk_key_id(signed: SignedRequest, *, required: bool) -> str | None:
    """The ``kid`` member inside the newAccount ``jwk`` (Peeringhub's account binding)."""
    key_id = signed.jws.header["jwk"].get("kid")
    if key_id is None and not required:
        return None
    if not isinstance(key_id, str) or not key_id.strip():
        raise Problem(
            "externalAccountRequired", 'this CA binds accounts by a "kid" member inside jwk'
        )
    return key_id


def _bind_key_id(session: Session, key_id: str, account_id: str, required: bool) -> str:
    """Tie the account to a kid from ``add-eab``; unknown kids pass only when not required."""
    record = session.get(EABKey, key_id)
    if record is None:
        if required:
            raise Problem("unauthorized", f"unknown account key id (kid) {key_id!r}")
        return key_id
    if record.account_id not in (None, account_id):
        raise Problem("unauthorized", "this key id (kid) is bound to another account")
    record.account_id = account_id
    return key_id


def _bind_eab(session: Session, binding: Any, signed: SignedRequest, account_id: str) -> str:
    kid = verify_eab(
        binding,
        account_jwk=signed.jwk,
        url=signed.url,
        mac_key_for=lambda kid: record.hmac_key if (record := session.get(EABKey, kid)) else None,
    )
    record = session.get(EABKey, kid)
    assert record is not None
    if record.account_id not in (None, account_id):
        raise Problem("unauthorized", "this externalAccountBinding kid is bound to another account")
    record.account_id = account_id
    return kid


async def account(request: Request) -> Response:
    sandbox = _sandbox(request)
    signed = await authenticate(request)
    current = _owned_account(signed, request.path_params["id"])
    if signed.post_as_get:
        return _json(_account_json(sandbox, current))
    payload = signed.payload()
    with sandbox.store.session() as session:
        record = session.get(Account, current.id)
        assert record is not None
        if "status" in payload:
            if payload["status"] != "deactivated":
                raise Problem("malformed", "an account can only be set to deactivated")
            record.status = "deactivated"
        if "contact" in payload:
            record.contact = {"contact": _contact(payload)}
    return _json(_account_json(sandbox, record))


def _owned_account(signed: SignedRequest, account_id: str) -> Account:
    account = signed.require_account()
    if account.id != account_id:
        raise Problem("unauthorized", "kid does not match this account")
    return account


async def account_orders(request: Request) -> Response:
    sandbox = _sandbox(request)
    signed = await authenticate(request)
    owner = _owned_account(signed, request.path_params["id"])
    with sandbox.store.session() as session:
        ids = session.scalars(select(Order.id).where(Order.account_id == owner.id)).all()
    return _json({"orders": [sandbox.urls.acme(f"order/{i}") for i in ids]})


async def key_change(request: Request) -> Response:
    """RFC 8555 section 7.3.5: the inner JWS, signed by the new key, names the account
    and its old key."""
    sandbox = _sandbox(request)
    signed = await authenticate(request)
    current = signed.require_account()
    inner = FlattenedJWS.parse(signed.payload(), "key-change payload")
    if "nonce" in inner.header or inner.header.get("url") != signed.url:
        raise Problem("malformed", "inner JWS must have the outer url and no nonce")
    new_key = parse_jwk(inner.header.get("jwk"))
    inner.verify(new_key)
    body = inner.payload_json()
    if body.get("account") != _account_url(sandbox, current):
        raise Problem("malformed", "inner payload account is not the signing account")
    if parse_jwk(body.get("oldKey")) != signed.jwk:
        raise Problem("unauthorized", "oldKey is not the account's current key")
    thumbprint = _thumbprint(new_key)
    with sandbox.store.session() as session:
        taken = session.scalar(select(Account).where(Account.thumbprint == thumbprint))
        if taken is not None:
            raise Problem(
                "malformed",
                "the new key is already in use by an account",
                status=409,
                headers={"Location": _account_url(sandbox, taken)},
            )
        record = session.get(Account, current.id)
        assert record is not None
        record.jwk = new_key.public_key().to_json()
        record.thumbprint = thumbprint
    return _json(_account_json(sandbox, record))


# Orders, authorizations, challenges


def _identifier(sandbox: Sandbox, payload: dict[str, Any]) -> tuple[str, TNAuthList]:
    identifiers = payload.get("identifiers")
    if not isinstance(identifiers, list) or len(identifiers) != 1:
        raise Problem("malformed", "an order needs exactly one identifier")
    ident = identifiers[0]
    if not isinstance(ident, dict) or ident.get("type") != "TNAuthList":
        raise Problem("unsupportedIdentifier", "this CA only issues for TNAuthList identifiers")
    value = ident.get("value")
    try:
        tnauthlist = TNAuthList.from_acme_value(value if isinstance(value, str) else "")
    except InvalidTNAuthList as exc:
        raise Problem("malformed", f"identifier value: {exc}") from None
    if tnauthlist.single_spc is None:
        raise Problem("rejectedIdentifier", "a SHAKEN certificate is for exactly one SPC")
    encoding = sandbox.config.profile.identifier_encoding
    if value != tnauthlist.to_acme_value(padded=encoding == "padded"):
        raise Problem("rejectedIdentifier", f"this CA expects the {encoding} identifier encoding")
    return value, tnauthlist


def _requested_time(payload: dict[str, Any], name: str) -> dt.datetime | None:
    value = payload.get(name)
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise Problem("malformed", f"{name} must be an RFC 3339 timestamp")
    return parsed


def _validity(sandbox: Sandbox, payload: dict[str, Any]) -> tuple[dt.datetime | None, ...]:
    if not sandbox.config.profile.honour_validity:
        return None, None
    not_before = _requested_time(payload, "notBefore")
    not_after = _requested_time(payload, "notAfter")
    start = not_before or sandbox.now()
    if not_after is not None and not_after <= start:
        raise Problem("malformed", "notAfter must be later than notBefore and now")
    return not_before, not_after


def _current_status(sandbox: Sandbox, order: Order) -> str:
    if order.status in ("pending", "ready") and order.expires <= sandbox.now():
        return "invalid"
    return order.status


def _order_json(sandbox: Sandbox, session: Session, order: Order) -> dict[str, Any]:
    authz_ids = session.scalars(
        select(Authorization.id).where(Authorization.order_id == order.id)
    ).all()
    body: dict[str, Any] = {
        "status": _current_status(sandbox, order),
        "expires": _time(order.expires),
        "identifiers": [{"type": "TNAuthList", "value": order.identifier}],
        "authorizations": [sandbox.urls.acme(f"authz/{i}") for i in authz_ids],
        "finalize": sandbox.urls.acme(f"finalize/{order.id}"),
    }
    if order.not_before:
        body["notBefore"] = _time(order.not_before)
    if order.not_after:
        body["notAfter"] = _time(order.not_after)
    if order.certificate_id:
        body["certificate"] = sandbox.urls.acme(f"cert/{order.certificate_id}")
    if order.error:
        body["error"] = order.error
    return body


async def new_order(request: Request) -> Response:
    sandbox = _sandbox(request)
    signed = await authenticate(request)
    owner = signed.require_account()
    payload = signed.payload()
    value, tnauthlist = _identifier(sandbox, payload)
    not_before, not_after = _validity(sandbox, payload)
    expires = sandbox.now() + _ORDER_LIFETIME
    with sandbox.store.session() as session:
        order = Order(
            account_id=owner.id,
            identifier=value,
            tnauthlist_der=tnauthlist.to_der(),
            not_before=not_before,
            not_after=not_after,
            expires=expires,
        )
        session.add(order)
        session.flush()
        authz = Authorization(order_id=order.id, expires=expires)
        session.add(authz)
        session.flush()
        session.add(Challenge(authz_id=authz.id))
        session.flush()
        body = _order_json(sandbox, session, order)
    return _json(body, 201, location=sandbox.urls.acme(f"order/{order.id}"))


def _get(session: Session, model: type[_T], ident: str, what: str) -> _T:
    found = session.get(model, ident)
    if found is None:
        raise Problem("malformed", f"no such {what}", status=404)
    return found


def _owned_order(session: Session, signed: SignedRequest, order_id: str) -> Order:
    owner = signed.require_account()
    order = _get(session, Order, order_id, "order")
    if order.account_id != owner.id:
        raise Problem("unauthorized", "this order belongs to another account")
    return order


async def order(request: Request) -> Response:
    sandbox = _sandbox(request)
    signed = await authenticate(request)
    with sandbox.store.session() as session:
        found = _owned_order(session, signed, request.path_params["id"])
        return _json(_order_json(sandbox, session, found))


def _challenge_json(sandbox: Sandbox, challenge: Challenge) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "tkauth-01",
        "tkauth-type": "atc",
        "token-authority": sandbox.urls.stipa,
        "url": sandbox.urls.acme(f"chall/{challenge.id}"),
        "token": challenge.token,
        "status": challenge.status,
    }
    if challenge.validated:
        body["validated"] = _time(challenge.validated)
    if challenge.error:
        body["error"] = challenge.error
    return body


def _authz_json(sandbox: Sandbox, session: Session, authz: Authorization) -> dict[str, Any]:
    order = session.get(Order, authz.order_id)
    assert order is not None
    challenges = session.scalars(select(Challenge).where(Challenge.authz_id == authz.id)).all()
    status = authz.status
    if status == "pending" and authz.expires <= sandbox.now():
        status = "expired"
    return {
        "status": status,
        "expires": _time(authz.expires),
        "identifier": {"type": "TNAuthList", "value": order.identifier},
        "challenges": [_challenge_json(sandbox, c) for c in challenges],
    }


def _owned_authz(session: Session, signed: SignedRequest, authz_id: str) -> Authorization:
    authz = _get(session, Authorization, authz_id, "authorization")
    _owned_order(session, signed, authz.order_id)
    return authz


async def authorization(request: Request) -> Response:
    sandbox = _sandbox(request)
    signed = await authenticate(request)
    with sandbox.store.session() as session:
        authz = _owned_authz(session, signed, request.path_params["id"])
        if not signed.post_as_get:
            if signed.payload().get("status") != "deactivated":
                raise Problem("malformed", "an authorization can only be set to deactivated")
            authz.status = "deactivated"
        return _json(_authz_json(sandbox, session, authz))


def _token_field(sandbox: Sandbox, payload: dict[str, Any]) -> Any:
    fields = sandbox.config.profile.tkauth_fields
    for name in fields:
        if name in payload:
            return payload[name]
    expected = " or ".join(repr(f) for f in fields)
    raise Problem("malformed", f"the tkauth-01 response must carry the SPC token in {expected}")


async def challenge(request: Request) -> Response:
    sandbox = _sandbox(request)
    signed = await authenticate(request)
    with sandbox.store.session() as session:
        found = _get(session, Challenge, request.path_params["id"], "challenge")
        authz = _owned_authz(session, signed, found.authz_id)
        if not signed.post_as_get and found.status == "pending":
            token = _token_field(sandbox, signed.payload())
            _validate_challenge(sandbox, session, signed, authz, found, token)
        up = sandbox.urls.acme(f"authz/{authz.id}")
        return _json(_challenge_json(sandbox, found), up=up)


def _validate_challenge(
    sandbox: Sandbox,
    session: Session,
    signed: SignedRequest,
    authz: Authorization,
    found: Challenge,
    token: Any,
) -> None:
    order = session.get(Order, authz.order_id)
    assert order is not None
    profile = sandbox.config.profile
    stipa_key = sandbox.pki.stipa.certificate.public_key()
    assert isinstance(stipa_key, ec.EllipticCurvePublicKey)
    expected = ExpectedToken(
        stipa_url=sandbox.pki.stipa_certificate_url,
        stipa_key=stipa_key,
        identifier=TNAuthList.from_der(order.tnauthlist_der),
        encoding=profile.identifier_encoding,
        fingerprint=account_fingerprint(signed.jwk, profile.fingerprint),
        now=sandbox.now(),
    )
    try:
        claims = validate_spc_token(token, expected)
        if sandbox.token_revoked(claims["jti"], expected.identifier.single_spc):
            raise Problem("unauthorized", "SPC token refused: revoked by the STI-PA")
    except Problem as exc:
        found.status = authz.status = order.status = "invalid"
        found.error = order.error = exc.to_dict()
        return
    found.status = authz.status = "valid"
    found.validated = sandbox.now()
    order.status = "ready"


# Finalize, certificates, revocation


def _csr(payload: dict[str, Any]) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_der_x509_csr(b64url_decode(payload.get("csr"), "csr"))
    except (ValueError, Problem):
        raise Problem("badCSR", "csr is not a base64url DER PKCS#10 request") from None
    if not csr.is_signature_valid:
        raise Problem("badCSR", "the CSR signature does not verify")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise Problem("badCSR", "the certificate key must be EC P-256")
    return csr


def _csr_tnauthlist(csr: x509.CertificateSigningRequest) -> TNAuthList:
    try:
        ext = csr.extensions.get_extension_for_oid(x509.ObjectIdentifier(TNAUTHLIST_OID))
        assert isinstance(ext.value, x509.UnrecognizedExtension)
        return TNAuthList.from_der(ext.value.value)
    except x509.ExtensionNotFound:
        raise Problem("badCSR", "the CSR has no TNAuthList extension") from None
    except (InvalidTNAuthList, ValueError) as exc:
        raise Problem("badCSR", f"the CSR's TNAuthList does not parse: {exc}") from None


def _spki(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _check_csr(
    sandbox: Sandbox, csr: x509.CertificateSigningRequest, order: Order, jwk: Any
) -> None:
    if _csr_tnauthlist(csr) != TNAuthList.from_der(order.tnauthlist_der):
        raise Problem("badCSR", "the CSR's TNAuthList is not the order's identifier")
    try:
        if csr.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise Problem("badCSR", "the CSR asks for CA:TRUE; atc.ca is false")
    except x509.ExtensionNotFound:
        pass
    same_key = _spki(csr.public_key()) == _spki(jwk.public_key().key)
    rule = sandbox.config.profile.cert_key
    if rule == "account" and not same_key:
        raise Problem("badCSR", "this CA requires the certificate key to be the account key")
    if rule == "separate" and same_key:
        raise Problem("badCSR", "the certificate key must not be the account key")
    if sandbox.config.profile.subject == "csr":
        _check_subject(csr.subject)


#: ATIS-1000080 section 6.4.1: the subject DN has C, O and CN (other attributes optional).
_REQUIRED_SUBJECT = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.COMMON_NAME: "CN",
}


def _check_subject(subject: x509.Name) -> None:
    """The CSR subject goes into the certificate as is, so refuse what a CA would not
    sign: a missing C/O/CN, or control and other non-printable characters."""
    for oid, short in _REQUIRED_SUBJECT.items():
        if not subject.get_attributes_for_oid(oid):
            raise Problem("badCSR", f"the CSR subject has no {short} (C, O and CN are required)")
    for attribute in subject:
        value = attribute.value
        name = attribute.rfc4514_attribute_name
        if not isinstance(value, str) or not value.strip():
            raise Problem("badCSR", f"the CSR subject's {name} is empty")
        if any(unicodedata.category(char)[0] in "CZ" and char != " " for char in value):
            raise Problem("badCSR", f"the CSR subject's {name} has forbidden characters")


#: The policy of a certificate issued under the ``bad_profile`` fault: outside the
#: SHAKEN arc, so a client's profile check must refuse it.
NON_SHAKEN_POLICY_OID = "1.3.6.1.4.1.55555.1.1"


def _issue(
    sandbox: Sandbox, session: Session, order: Order, csr: x509.CertificateSigningRequest
) -> Certificate:
    spc = TNAuthList.from_der(order.tnauthlist_der).single_spc
    assert spc is not None
    key = csr.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    not_before = order.not_before or sandbox.now() - dt.timedelta(seconds=30)
    not_after = order.not_after or not_before + sandbox.config.validity
    cert = issue_shaken_certificate(
        spc,
        public_key=key,
        issuer=sandbox.pki.intermediate,
        crl_url=sandbox.urls.crl,
        not_before=not_before,
        not_after=not_after,
        policy_oid=NON_SHAKEN_POLICY_OID if sandbox.faults.bad_profile else SHAKEN_POLICY_OID,
        subject=csr.subject if sandbox.config.profile.subject == "csr" else None,
        with_tnauthlist=not sandbox.faults.no_tnauthlist,
    )
    record = Certificate(
        account_id=order.account_id,
        serial=f"{cert.serial_number:x}",
        spc=spc,
        chain_pem=to_pem([cert, sandbox.pki.intermediate.certificate]),
        not_after=not_after,
    )
    session.add(record)
    session.flush()
    return record


async def finalize(request: Request) -> Response:
    sandbox = _sandbox(request)
    signed = await authenticate(request)
    with sandbox.store.session() as session:
        found = _owned_order(session, signed, request.path_params["id"])
        if _current_status(sandbox, found) != "ready":
            raise Problem("orderNotReady", f"the order is {_current_status(sandbox, found)}")
        csr = _csr(signed.payload())
        _check_csr(sandbox, csr, found, signed.jwk)
        found.certificate_id = _issue(sandbox, session, found, csr).id
        found.status = "valid"
        location = sandbox.urls.acme(f"order/{found.id}")
        return _json(_order_json(sandbox, session, found), location=location)


async def certificate(request: Request) -> Response:
    sandbox = _sandbox(request)
    signed = await authenticate(request)
    owner = signed.require_account()
    with sandbox.store.session() as session:
        record = _get(session, Certificate, request.path_params["id"], "certificate")
    if record.account_id != owner.id:
        raise Problem("unauthorized", "this certificate belongs to another account")
    return Response(record.chain_pem, media_type=PEM_CHAIN_CONTENT_TYPE)


async def revoke_cert(request: Request) -> Response:
    """Revoke by the issuing account (kid) or by the certificate key (jwk)."""
    sandbox = _sandbox(request)
    signed = await authenticate(request, key="either")
    payload = signed.payload()
    try:
        cert = x509.load_der_x509_certificate(b64url_decode(payload.get("certificate"), "cert"))
    except ValueError:
        raise Problem("malformed", "certificate is not base64url DER") from None
    reason = payload.get("reason", 0)
    if reason not in _REVOCATION_REASONS or isinstance(reason, bool):
        raise Problem("badRevocationReason", f"reason {reason!r} is not accepted")
    with sandbox.store.session() as session:
        record = session.scalar(
            select(Certificate).where(Certificate.serial == f"{cert.serial_number:x}")
        )
        if record is None or not record.chain_pem.startswith(to_pem([cert])):
            raise Problem("malformed", "this CA did not issue that certificate", status=404)
        if signed.account is not None and signed.account.id != record.account_id:
            raise Problem("unauthorized", "the certificate was issued to another account")
        if signed.account is None and _spki(signed.jwk.key) != _spki(cert.public_key()):
            raise Problem("unauthorized", "jwk is not the certificate's key")
        if record.revoked_at is not None:
            raise Problem("alreadyRevoked", "the certificate is already revoked")
        record.revoked_at = sandbox.now()
        record.revocation_reason = reason
    return Response(status_code=200)


async def not_found(request: Request) -> Response:
    raise Problem("malformed", f"no ACME resource at {request.url.path}", status=404)


acme_routes = [
    Route("/acme/directory", directory, methods=["GET"]),
    Route("/acme/new-nonce", new_nonce, methods=["GET", "HEAD"]),
    Route("/acme/new-account", new_account, methods=["POST"]),
    Route("/acme/account/{id}", account, methods=["POST"]),
    Route("/acme/account/{id}/orders", account_orders, methods=["POST"]),
    Route("/acme/key-change", key_change, methods=["POST"]),
    Route("/acme/new-order", new_order, methods=["POST"]),
    Route("/acme/order/{id}", order, methods=["POST"]),
    Route("/acme/authz/{id}", authorization, methods=["POST"]),
    Route("/acme/chall/{id}", challenge, methods=["POST"]),
    Route("/acme/finalize/{id}", finalize, methods=["POST"]),
    Route("/acme/cert/{id}", certificate, methods=["POST"]),
    Route("/acme/revoke-cert", revoke_cert, methods=["POST"]),
    Route("/acme/{rest:path}", not_found, methods=["GET", "HEAD", "POST"]),
]
