"""`opensti serve` builds its SIP listeners' policy from the settings (environment or
config file), so an operator tunes the transaction layer without code."""

from __future__ import annotations

from pathlib import Path

import pytest

from opensti.cli.serve import sip_policy
from opensti.config import load_settings
from opensti.core.errors import InvalidInput
from opensti.sip import RedirectPolicy


def test_defaults_are_the_redirect_servers_own(tmp_path: Path) -> None:
    policy = sip_policy(load_settings(data_dir=tmp_path))
    assert policy == RedirectPolicy()


def test_environment_reaches_the_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENSTI_SIP_VERIFY_TIMEOUT", "1.5")
    monkeypatch.setenv("OPENSTI_SIP_MAX_IN_FLIGHT", "64")
    monkeypatch.setenv("OPENSTI_SIP_TRYING_DELAY", "0")
    monkeypatch.setenv("OPENSTI_SIP_TRANSACTION_LIFETIME", "10")
    monkeypatch.setenv("OPENSTI_SIP_MAX_TRANSACTIONS", "100")
    monkeypatch.setenv("OPENSTI_SIP_DEST_FROM_REQUEST_URI", "true")
    policy = sip_policy(load_settings(data_dir=tmp_path))
    assert policy.verify_timeout == 1.5
    assert policy.max_in_flight == 64
    assert policy.trying_delay is None  # 0 turns 100 Trying off
    assert policy.transaction_lifetime == 10
    assert policy.max_transactions == 100
    assert policy.dest_from_request_uri is True


def test_nonsense_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENSTI_SIP_MAX_TRANSACTIONS", "0")
    with pytest.raises(InvalidInput, match="sip_max_transactions"):
        load_settings(data_dir=tmp_path)
