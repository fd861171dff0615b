"""A hand-built ACME and STI-PA client for protocol tests of the sandbox.

It writes every JWS itself (josepy for the signature primitive only) so tests can
break one thing at a time: the nonce, the url, the key, the EAB MAC. It shares no code
with opensti's own ACME client.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256, HS256
from josepy.jwk import JWKEC

from opensti.core.tnauthlist import TNAUTHLIST_OID, TNAuthList
from opensti.sandbox.config import DEMO_PASSWORD
from opensti.sandbox.server import SandboxHandle
from tests._servers import client_env

JOSE = {"Content-Type": "application/jose+json"}


def run_program(program: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a client program without proxy settings (everything here is 127.0.0.1)."""
    return subprocess.run(
        [program, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=client_env(),
    )


def opensti_program() -> str:
    beside = Path(sys.executable).with_name("opensti")
    found = str(beside) if beside.exists() else shutil.which("opensti")
    assert found, "the opensti console script is not installed"
    return found


@contextlib.contextmanager
def sandbox_process(data_dir: Path, *args: str) -> Iterator[dict[str, str]]:
    """``opensti sandbox`` as a child process on a free port: yields the lines it
    announces (``ACME directory``, ``STI-PA base URL``, ``TLS root (trust this)``, ...)
    by name, and stops it on exit."""
    child = subprocess.Popen(
        [opensti_program(), "sandbox", "--port", "0", "--data-dir", str(data_dir), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=client_env(),
    )
    announced: dict[str, str] = {}
    try:
        assert child.stdout is not None
        for line in child.stdout:
            name, _, value = line.partition(": ")
            announced[name.strip()] = value.strip()
            if name.startswith("CA profile"):
                break
        yield announced
    finally:
        child.terminate()
        child.wait(timeout=30)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64(json.dumps(value).encode())


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    return JWKEC(key=key.public_key()).to_json()


def jwk_fingerprint(key: ec.EllipticCurvePrivateKey) -> str:
    digest = JWKEC(key=key.public_key()).thumbprint(hashes.SHA256)
    return "SHA256 " + ":".join(f"{b:02X}" for b in digest)


def spki_fingerprint(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    h = hashes.Hash(hashes.SHA256())
    h.update(der)
    return "SHA256 " + ":".join(f"{b:02X}" for b in h.finalize())


def sign_jws(
    key: ec.EllipticCurvePrivateKey,
    protected: dict[str, Any],
    payload: Any,
    *,
    signing_input: str = "{protected}.{payload}",
) -> dict[str, str]:
    """A flattened JWS; ``payload`` None means POST-as-GET (empty payload).

    ``signing_input`` says what is signed: RFC 7515's by default, ``"{protected}"`` for
    Peeringhub's protected-only variant, anything else to break it."""
    p = b64json(protected)
    body = "" if payload is None else b64json(payload)
    signature = ES256.sign(key, signing_input.format(protected=p, payload=body).encode())
    return {"protected": p, "payload": body, "signature": b64(signature)}


def eab_binding(
    kid: str, hmac_key_b64: str, url: str, jwk: dict[str, Any], **extra: Any
) -> dict[str, str]:
    protected = b64json({"alg": "HS256", "kid": kid, "url": url, **extra})
    payload = b64json(jwk)
    mac_key = base64.urlsafe_b64decode(hmac_key_b64 + "=" * (-len(hmac_key_b64) % 4))
    signature = HS256.sign(mac_key, f"{protected}.{payload}".encode())
    return {"protected": protected, "payload": payload, "signature": b64(signature)}


def tnauthlist_value(spc: str, *, padded: bool = True) -> str:
    return TNAuthList.for_spc(spc).to_acme_value(padded=padded)


def make_csr(key: ec.EllipticCurvePrivateKey, spc: str | None, *, ca: bool | None = None) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name(
            [
                x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "US"),
                x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "Test SP"),
                x509.NameAttribute(x509.NameOID.COMMON_NAME, f"SHAKEN {spc}"),
            ]
        )
    )
    if spc is not None:
        der = TNAuthList.for_spc(spc).to_der()
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(TNAUTHLIST_OID), der), False
        )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    csr = builder.sign(key, hashes.SHA256())
    return b64(csr.public_bytes(serialization.Encoding.DER))


@dataclass
class Issued:
    key: ec.EllipticCurvePrivateKey
    chain_pem: bytes
    order_url: str
    cert_url: str


@dataclass
class ACMETestClient:
    handle: SandboxHandle
    key: ec.EllipticCurvePrivateKey = field(default_factory=new_key)
    kid: str | None = None

    def __post_init__(self) -> None:
        self.http = httpx.Client(verify=self.handle.verify, trust_env=False, timeout=30)
        self.directory = self.http.get(self.handle.ca_directory_url).json()

    def close(self) -> None:
        self.http.close()

    # Raw JWS requests

    def nonce(self) -> str:
        return self.http.head(self.directory["newNonce"]).headers["Replay-Nonce"]

    def protected(self, url: str, *, use_jwk: bool = False, **overrides: Any) -> dict[str, Any]:
        header: dict[str, Any] = {"alg": "ES256", "nonce": self.nonce(), "url": url}
        if use_jwk or self.kid is None:
            header["jwk"] = public_jwk(self.key)
        else:
            header["kid"] = self.kid
        header.update(overrides)
        return {k: v for k, v in header.items() if v is not None}

    def post(
        self,
        url: str,
        payload: Any = None,
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
        use_jwk: bool = False,
        header_url: str | None = None,
        signing_input: str = "{protected}.{payload}",
        **overrides: Any,
    ) -> httpx.Response:
        protected = self.protected(url, use_jwk=use_jwk, **overrides)
        if header_url is not None:
            protected["url"] = header_url
        body = sign_jws(key or self.key, protected, payload, signing_input=signing_input)
        return self.http.post(url, content=json.dumps(body), headers=JOSE)

    # Account

    def register(self, eab: tuple[str, str] | None, **payload: Any) -> httpx.Response:
        url = self.directory["newAccount"]
        body: dict[str, Any] = {"termsOfServiceAgreed": True, **payload}
        if eab is not None:
            body["externalAccountBinding"] = eab_binding(*eab, url, public_jwk(self.key))
        response = self.post(url, body, use_jwk=True)
        if response.status_code in (200, 201):
            self.kid = response.headers["Location"]
        return response

    def register_with_key_id(self, key_id: str | None) -> httpx.Response:
        """Peeringhub's newAccount: the key id inside jwk, an empty payload signed over the
        protected header alone."""
        jwk = public_jwk(self.key) if key_id is None else {**public_jwk(self.key), "kid": key_id}
        url = self.directory["newAccount"]
        response = self.post(url, None, use_jwk=True, jwk=jwk, signing_input="{protected}")
        if response.status_code in (200, 201):
            self.kid = response.headers["Location"]
        return response

    # Orders

    def new_order(self, spc: str, *, padded: bool = True, **extra: Any) -> httpx.Response:
        identifier = {"type": "TNAuthList", "value": tnauthlist_value(spc, padded=padded)}
        return self.post(self.directory["newOrder"], {"identifiers": [identifier], **extra})

    def challenge_url(self, order: dict[str, Any]) -> str:
        authz = self.post(order["authorizations"][0]).json()
        return str(authz["challenges"][0]["url"])

    def answer(self, order: dict[str, Any], token: str, field_name: str = "atc") -> httpx.Response:
        return self.post(self.challenge_url(order), {field_name: token})

    def issue(
        self,
        spc: str,
        token: str,
        *,
        cert_key: ec.EllipticCurvePrivateKey | None = None,
        padded: bool = True,
        field_name: str = "atc",
    ) -> Issued:
        """The whole happy path after registration; asserts each step."""
        created = self.new_order(spc, padded=padded)
        assert created.status_code == 201, created.text
        order_url, order = created.headers["Location"], created.json()
        chall = self.answer(order, token, field_name)
        assert chall.json()["status"] == "valid", chall.text
        cert_key = cert_key or new_key()
        final = self.post(order["finalize"], {"csr": make_csr(cert_key, spc)})
        assert final.status_code == 200, final.text
        cert_url = final.json()["certificate"]
        chain = self.post(cert_url)
        assert chain.headers["content-type"] == "application/pem-certificate-chain"
        return Issued(cert_key, chain.content, order_url, cert_url)


@dataclass
class STIPATestClient:
    handle: SandboxHandle

    def __post_init__(self) -> None:
        self.http = httpx.Client(
            base_url=self.handle.stipa_base_url,
            verify=self.handle.verify,
            trust_env=False,
            timeout=30,
        )

    def close(self) -> None:
        self.http.close()

    def login(self, user: str = "demo", password: str = DEMO_PASSWORD) -> httpx.Response:
        return self.http.post("/api/v1/auth/login", json={"userId": user, "password": password})

    def access_token(self, user: str = "demo", password: str = DEMO_PASSWORD) -> str:
        response = self.login(user, password)
        assert response.status_code == 200, response.text
        return str(response.json()["accessToken"])

    def request_token(
        self,
        atc: dict[str, Any],
        *,
        account: str = "123H",
        access_token: str | None = None,
        slash: str = "/",
    ) -> httpx.Response:
        token = access_token if access_token is not None else self.access_token()
        return self.http.post(
            f"/api/v1/account/{account}/token{slash}",
            json={"atc": atc},
            headers={"Authorization": token},
        )

    def spc_token(
        self, spc: str, fingerprint: str, *, padded: bool = True, account: str = "123H"
    ) -> str:
        atc = {
            "tktype": "TNAuthList",
            "tkvalue": tnauthlist_value(spc, padded=padded),
            "ca": False,
            "fingerprint": fingerprint,
        }
        response = self.request_token(atc, account=account)
        assert response.status_code == 200, response.text
        return str(response.json()["token"])
