"""CA failures reach the user as opensti errors with the CA's own words."""

from __future__ import annotations

import socket

import pytest
from acme import messages
from cryptography.hazmat.primitives.asymmetric import ec

from opensti.acme import AcmeClient, custom_profile
from opensti.acme._errors import ca_errors
from opensti.core.errors import AcmeProblem, ServiceUnreachable, UpstreamError, cli_exit_code

UNAUTHORIZED = "urn:ietf:params:acme:error:unauthorized"


def test_problem_document_becomes_acme_problem() -> None:
    with pytest.raises(AcmeProblem) as caught, ca_errors("https://ca.example.net/dir"):
        raise messages.Error(typ=UNAUTHORIZED, detail="EAB MAC does not verify")
    assert str(caught.value) == f"CA refused: {UNAUTHORIZED}: EAB MAC does not verify"
    assert caught.value.problem_type == UNAUTHORIZED
    assert caught.value.detail == "EAB MAC does not verify"
    assert isinstance(caught.value, UpstreamError)
    assert cli_exit_code(caught.value) == 5


def test_subproblems_are_kept() -> None:
    error = messages.Error.from_json(
        {
            "type": "urn:ietf:params:acme:error:compound",
            "detail": "two problems",
            "subproblems": [{"type": "urn:ietf:params:acme:error:malformed", "detail": "tkvalue"}],
        }
    )
    with pytest.raises(AcmeProblem, match="two problems; tkvalue"), ca_errors("dir"):
        raise error


def test_problem_without_detail_uses_the_standard_description() -> None:
    expected = "badNonce: The client sent an unacceptable"
    with pytest.raises(AcmeProblem, match=expected), ca_errors("dir"):
        raise messages.Error.with_code("badNonce")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.integration
def test_unreachable_ca_is_a_clear_upstream_error() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/acme/directory"
    client = AcmeClient(custom_profile("down", url), ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ServiceUnreachable, match=f"cannot reach the CA at {url}"):
        client.register(email="ops@example.net", agree_tos=True)
