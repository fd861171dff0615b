"""A shorter run of the soak (bench/soak.py runs the full ten minutes): ``opensti serve``
under random CA/STI-PA faults, probed every second; no second may go without a valid
published certificate for any entry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.lifecycle.soak_support import run_soak

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECONDS = float(os.environ.get("OPENSTI_SOAK_SECONDS", "240"))


def test_soak_keeps_a_valid_certificate_published(tmp_path: Path) -> None:
    report = run_soak(tmp_path, SECONDS, log=lambda line: None)
    print("\n" + "\n".join(report.lines()))
    assert report.probes >= SECONDS - 5
    # Two-minute certificates renewed at 40 s left: every entry renewed more than once.
    assert report.renewals >= 3 * int(SECONDS // 100)
    assert report.bad_seconds == 0, report.lines()
    assert report.server_exit == 0
