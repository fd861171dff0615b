"""``--sip-listen`` specs: TRANSPORT:HOST:PORT[/MODE[/POLICY]], comma-separated."""

from __future__ import annotations

import pytest

from opensti.core.errors import InvalidInput
from opensti.sip import FailurePolicy, ListenerSpec, Mode, parse_listeners


def test_parse_listeners() -> None:
    specs = parse_listeners(
        "udp:192.0.2.1:5060, TCP:192.0.2.1:5060/sign,udp:[::1]:5070/verify,"
        "tcp:127.0.0.1:5071/Verify/continue-with-reason,udp:127.0.0.1:5072/verify/reject"
    )
    assert specs == [
        ListenerSpec("udp", "192.0.2.1", 5060, Mode.SIGN),
        ListenerSpec("tcp", "192.0.2.1", 5060, Mode.SIGN),
        ListenerSpec("udp", "::1", 5070, Mode.VERIFY, FailurePolicy.CONTINUE),
        ListenerSpec("tcp", "127.0.0.1", 5071, Mode.VERIFY, FailurePolicy.CONTINUE_WITH_REASON),
        ListenerSpec("udp", "127.0.0.1", 5072, Mode.VERIFY, FailurePolicy.REJECT),
    ]


def test_listener_spec_round_trips() -> None:
    text = "udp:[::1]:5070/verify/reject,tcp:127.0.0.1:5060/sign,udp:127.0.0.1:5062/sign/reject"
    assert ",".join(str(s) for s in parse_listeners(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sctp:0.0.0.0:5060",
        "udp:0.0.0.0",
        "udp::5060",
        "udp:0.0.0.0:70000",
        "udp:0.0.0.0:50a0",
        "udp:0.0.0.0:5060/record",
        "udp:0.0.0.0:5060/verify/ignore",
        "udp:0.0.0.0:5060/sign/continue-with-reason",
        "udp:0.0.0.0:5060/verify/reject/extra",
    ],
)
def test_bad_listener_specs(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_listeners(text)
