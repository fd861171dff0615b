"""shaken-cert-manager (PyPI, the public Peeringhub client) and opensti's own ACME client
each get a certificate from ``opensti sandbox --profile peeringhub`` run as a child
process: STI-PA login, SPC token, order, tkauth-01, finalize, download and, for
shaken-cert-manager, its own checks of the certificate (subject, key, TNAuthList, CRL
URL, policy, at least 14 days left).

shaken-cert-manager runs unpatched from ``.venv-peeringhub`` (made by scripts/test.sh
from tests/interop/peeringhub-requirements.txt); it is configured only through its YAML
file and trusts the sandbox's TLS root through requests' ``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from opensti.acme import AcmeClient, obtain_certificate, sandbox_profile
from opensti.acme.profiles import PEERINGHUB
from opensti.sandbox.config import DEMO_PASSWORD
from opensti.stipa import StiPaClient, StiPaCredentials
from tests._servers import client_env
from tests.sandbox.acme_support import opensti_program, run_program, sandbox_process

pytestmark = [pytest.mark.integration, pytest.mark.interop]

REPO = Path(__file__).resolve().parents[2]
MANAGER = REPO / ".venv-peeringhub" / "bin" / "shaken-cert-manager"


@dataclass(frozen=True)
class PeeringhubSandbox:
    directory: str
    stipa: str
    crl: str
    tls_root: Path
    stipa_certificate: Path
    data_dir: Path

    def key_id(self) -> str:
        """A customer key id the sandbox knows (``opensti sandbox add-eab``)."""
        added = run_program(
            opensti_program(), "sandbox", "add-eab", "--data-dir", str(self.data_dir), "--json"
        )
        assert added.returncode == 0, added.stderr
        return str(json.loads(added.stdout)["kid"])


@pytest.fixture(scope="module")
def peeringhub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeeringhubSandbox]:
    data_dir = tmp_path_factory.mktemp("peeringhub-sandbox")
    with sandbox_process(data_dir, "--profile", "peeringhub") as announced:
        yield PeeringhubSandbox(
            directory=announced["ACME directory"],
            stipa=announced["STI-PA base URL"],
            crl=announced["STI-PA CRL"],
            tls_root=Path(announced["TLS root (trust this)"]),
            stipa_certificate=Path(announced["STI-PA certificate"]),
            data_dir=data_dir,
        )


def _account_key(path: Path) -> None:
    """The Peeringhub account key shaken-cert-manager expects to find provisioned."""
    path.parent.mkdir(parents=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _manager_config(sandbox: PeeringhubSandbox, state: Path) -> Path:
    settings = {
        "enabled": True,
        "peeringhub_environment": "staging",
        "server_id": "ci",
        "stipa_spc": "123H",
        "stipa_sp_id": "123H",
        "stipa_user_id": "demo",
        "stipa_password": DEMO_PASSWORD,
        "shaken_subject_state": "VA",
        "shaken_subject_locality": "Reston",
        "shaken_subject_organization": "Example Telecom",
        "acme_kid": sandbox.key_id(),
        "acme_base_url_override": sandbox.directory,
        "stipa_base_url_override": sandbox.stipa,
        "stipa_crl_url_override": sandbox.crl,
        "acme_poll_interval_seconds": 1,
        "acme_poll_timeout_seconds": 120,
        "state_dir": str(state),
    }
    config = state.parent / "shaken-cert-manager.yaml"
    # JSON is YAML: no YAML writer needed on opensti's side.
    config.write_text(json.dumps(settings, indent=2))
    config.chmod(0o600)  # it holds the STI-PA password: the client insists
    return config


def _manager(config: Path, tls_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run shaken-cert-manager; it trusts the sandbox's TLS root through requests' env."""
    env = {**client_env(), "REQUESTS_CA_BUNDLE": str(tls_root)}
    env.pop("CURL_CA_BUNDLE", None)
    return subprocess.run(
        [str(MANAGER), "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def test_shaken_cert_manager_gets_a_certificate(
    peeringhub: PeeringhubSandbox, tmp_path: Path
) -> None:
    if not MANAGER.exists():
        pytest.skip(f"{MANAGER} is missing: scripts/test.sh installs shaken-cert-manager there")
    state = tmp_path / "state"
    _account_key(state / "account" / "account.key")
    config = _manager_config(peeringhub, state)
    issued = _manager(config, peeringhub.tls_root, "issue-initial")
    # Its own checks ran before this: subject, key, TNAuthList, CRL URL, SHAKEN policy,
    # at least 14 days left (stir_shaken_acme/certificates.py).
    assert issued.returncode == 0, issued.stdout + issued.stderr
    leaf = x509.load_pem_x509_certificate((state / "live" / "current" / "leaf.pem").read_bytes())
    organization = leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    assert organization == "Example Telecom"
    status = _manager(config, peeringhub.tls_root, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["code"] == 0


def test_opensti_gets_a_certificate_with_the_peeringhub_profile(
    peeringhub: PeeringhubSandbox,
) -> None:
    profile = sandbox_profile(peeringhub.directory, **PEERINGHUB.knobs())
    client = AcmeClient(
        profile, ec.generate_private_key(ec.SECP256R1()), verify=str(peeringhub.tls_root)
    )
    account = client.register(key_id=peeringhub.key_id())
    assert account.fingerprint.startswith("SHA256 ")
    stipa_cert = x509.load_pem_x509_certificate(peeringhub.stipa_certificate.read_bytes())
    with StiPaClient(
        StiPaCredentials("123H", "demo", DEMO_PASSWORD),
        base_url=peeringhub.stipa,
        verify=ssl.create_default_context(cafile=str(peeringhub.tls_root)),
        trust_anchors=(stipa_cert,),
        expected_crl_url=peeringhub.crl,
    ) as stipa:
        issued = obtain_certificate(client, "123H", stipa, organization="Example Telecom")
    assert issued.key is client.key
    assert issued.chain.leaf.subject.rfc4514_string() == "CN=SHAKEN 123H,O=Example Telecom,C=US"
