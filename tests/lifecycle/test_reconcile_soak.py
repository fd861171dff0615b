"""A short run of the soak (bench/soak.py runs the full ten minutes with 2-minute
certificates): ``opensti serve`` under random CA/STI-PA faults, probed every second; no
second may go without a valid published certificate for any entry. The certificates
live 60 s here, and the faults and backoffs shrink with them (see soak_support), so
50 s see every entry renewed under the same mix of faults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.lifecycle.soak_support import ENTRIES, run_soak

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECONDS = float(os.environ.get("OPENSTI_SOAK_SECONDS", "50"))
VALIDITY = float(os.environ.get("OPENSTI_SOAK_VALIDITY", "60"))


def test_soak_keeps_a_valid_certificate_published(tmp_path: Path) -> None:
    report = run_soak(tmp_path, SECONDS, cert_validity=VALIDITY, log=lambda line: None)
    print("\n" + "\n".join(report.lines()))
    assert report.probes >= SECONDS - 5
    # Renewed at a third of their life left: every entry renews once per two thirds of
    # a life, one round short allowed for the entries' staggered start.
    rounds = int(SECONDS // (VALIDITY * 2 / 3))
    assert report.renewals >= len(ENTRIES) * max(1, rounds - 1)
    assert report.bad_seconds == 0, report.lines()
    assert report.server_exit == 0
