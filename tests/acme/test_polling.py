"""Retry-After parsing: the delay that polling waits, from a header and an injected now."""

from __future__ import annotations

import datetime as dt

import pytest

from opensti.acme import retry_after_seconds

NOW = dt.datetime(2026, 1, 5, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 120 ", 120.0),
        ("Mon, 05 Jan 2026 12:00:30 GMT", 30.0),
        ("Mon, 05 Jan 2026 11:59:00 GMT", 0.0),
        (None, 1.5),
        ("", 1.5),
        ("soon", 1.5),
        ("-3", 1.5),
    ],
)
def test_retry_after(header: str | None, seconds: float) -> None:
    assert retry_after_seconds(header, NOW, 1.5) == seconds
