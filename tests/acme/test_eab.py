"""External Account Binding (RFC 8555 7.3.4): the key check and the JWS it produces."""

from __future__ import annotations

import base64
import json
import secrets

import pytest
from acme import messages
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.b64 import b64decode
from josepy.jwk import JWK, JWKOct
from josepy.jws import JWS

from opensti.acme import EABCredentials
from opensti.core.errors import InvalidInput

NEW_ACCOUNT = "https://ca.example.com/acme/new-account"


def _hmac_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def test_binding_is_an_hs256_jws_over_the_account_jwk() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    hmac_key = _hmac_key()
    binding = EABCredentials("kid-1", hmac_key).binding(
        key, messages.Directory({"newAccount": NEW_ACCOUNT})
    )
    assert set(binding) == {"protected", "payload", "signature"}
    protected = json.loads(b64decode(binding["protected"]))
    assert protected == {"alg": "HS256", "kid": "kid-1", "url": NEW_ACCOUNT}
    payload = JWK.json_loads(b64decode(binding["payload"]))
    assert payload.key.public_numbers() == key.public_key().public_numbers()
    jws = JWS.from_json(binding)
    assert jws.verify(JWKOct(key=b64decode(hmac_key)))
    assert not jws.verify(JWKOct(key=b64decode(_hmac_key())))


def test_padded_base64url_key_is_accepted() -> None:
    raw = secrets.token_bytes(31)
    padded = base64.urlsafe_b64encode(raw).decode()
    assert padded.endswith("=")
    key = ec.generate_private_key(ec.SECP256R1())
    binding = EABCredentials("kid", padded).binding(
        key, messages.Directory({"newAccount": NEW_ACCOUNT})
    )
    assert JWS.from_json(binding).verify(JWKOct(key=raw))


@pytest.mark.parametrize(
    "hmac_key",
    ["not base64 at all", "abc+def/ghi", "", "====", "a\nb", "zz!"],
)
def test_key_that_is_not_base64url_is_refused(hmac_key: str) -> None:
    with pytest.raises(InvalidInput, match="not base64url"):
        EABCredentials("kid", hmac_key)


def test_empty_kid_is_refused() -> None:
    with pytest.raises(InvalidInput, match="key id"):
        EABCredentials(" ", _hmac_key())


def test_repr_hides_the_hmac_key() -> None:
    hmac_key = _hmac_key()
    assert hmac_key not in repr(EABCredentials("kid", hmac_key))
