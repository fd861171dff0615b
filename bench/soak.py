"""The lifecycle soak: 3 entries, 2-minute certificates, random CA/STI-PA faults, 10 minutes.

Run on demand from the repository root:
``.venv/bin/python bench/soak.py [--seconds 600] [--fail-rate 0.05] [--seed 1]``.
``opensti serve`` keeps the certificates renewed while a probe fetches each entry's
current x5u from its STI-CR every second and validates the chain; the figure is
"seconds without a valid published cert", which must be 0. See bench/README.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.lifecycle.soak_support import run_soak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--validity", type=float, default=120.0, help="certificate life, s")
    parser.add_argument("--fail-rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="keep the store and logs in this directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="opensti-soak-") as tmp:
        report = run_soak(
            args.keep or Path(tmp),
            args.seconds,
            cert_validity=args.validity,
            fail_rate=args.fail_rate,
            seed=args.seed,
        )
    print("\n".join(report.lines()))
    return 0 if report.bad_seconds == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
