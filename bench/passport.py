"""PASSporT sign/verify throughput on one core, beside OpenSSL's raw ECDSA P-256 rate.

Run on demand: ``python bench/passport.py [--seconds N] [--rounds R] [--cpu K]``.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from opensti.core.passport import (
    PassportSigner,
    ShakenClaims,
    decode_passport,
    shaken_claims,
    verify_signature,
)

#: From issue 3: the core's rate as a share of OpenSSL's raw ECDSA rate.
TARGETS = {"sign": 0.40, "verify": 0.60}

CLAIMS = ShakenClaims(
    orig="12025550100",
    dest=("12025550101",),
    iat=1700000000,
    attest="A",
    origid="1f4b8a39-5cde-4f2b-9d7e-0b8f1c6a2e11",
)
X5U = "https://cr.sandbox.example/sti/1234/chain.pem"
_OPENSSL_LINE = re.compile(r"256 bits ecdsa \(nistp256\)\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)")


@dataclass(frozen=True)
class Rates:
    sign: float
    verify: float

    def best(self, other: Rates) -> Rates:
        return Rates(max(self.sign, other.sign), max(self.verify, other.verify))


def user_seconds() -> float:
    """CPU time this process spent in user mode: what ``openssl speed`` divides by."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_utime


def rate(operation: Callable[[], object], seconds: float, batch: int = 200) -> float:
    """Operations per user-CPU second of ``operation`` run back to back.

    ``openssl speed`` divides by user CPU time unless given ``-elapsed``, so we do too:
    on a shared machine wall-clock rates would measure the neighbours as well.
    """
    for _ in range(batch):  # Warm up caches and lazy initialisation.
        operation()
    count = 0
    start = user_seconds()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            operation()
        count += batch
        now = user_seconds()
        if now >= deadline:
            return count / (now - start)


def opensti_rates(seconds: float) -> Rates:
    key = ec.generate_private_key(ec.SECP256R1())
    public_key = key.public_key()
    signer = PassportSigner(key, X5U)
    token = signer.sign(CLAIMS)

    def verify() -> None:
        passport = decode_passport(token)
        shaken_claims(passport)
        verify_signature(passport, public_key)

    return Rates(sign=rate(lambda: signer.sign(CLAIMS), seconds), verify=rate(verify, seconds))


def cryptography_rates(seconds: float) -> Rates:
    """The same ECDSA through ``cryptography`` with nothing around it: our floor."""
    key = ec.generate_private_key(ec.SECP256R1())
    public_key = key.public_key()
    algorithm = ec.ECDSA(hashes.SHA256())
    message = b"x" * 400  # About the size of a SHAKEN signing input.
    signature = key.sign(message, algorithm)
    return Rates(
        sign=rate(lambda: key.sign(message, algorithm), seconds),
        verify=rate(lambda: public_key.verify(signature, message, algorithm), seconds),
    )


def openssl_rates(seconds: int) -> tuple[Rates, str]:
    openssl = shutil.which("openssl")
    if openssl is None:
        sys.exit("openssl is not installed (Debian package openssl)")
    result = subprocess.run(
        [openssl, "speed", "-seconds", str(seconds), "ecdsap256"],
        capture_output=True,
        text=True,
        check=True,
    )
    match = _OPENSSL_LINE.search(result.stdout)
    if match is None:
        sys.exit(f"cannot find the ecdsap256 sign/s verify/s line in:\n{result.stdout}")
    version = subprocess.run(
        [openssl, "version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return Rates(sign=float(match[1]), verify=float(match[2])), version


def pin_to_one_core(cpu: int | None) -> str:
    """Pin this process (and the openssl it starts) to one CPU, where the OS allows it."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    chosen = cpu if cpu is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {chosen})
    return f"pinned to CPU {chosen}"


def measure(seconds: int, rounds: int) -> tuple[Rates, Rates, Rates, str]:
    """Best of ``rounds`` interleaved runs: CPU time hides most of the load from other
    processes, not their effect on caches, which only ever slows a run down."""
    raw, version = openssl_rates(seconds)
    floor, ours = cryptography_rates(seconds), opensti_rates(seconds)
    for _ in range(rounds - 1):
        raw = raw.best(openssl_rates(seconds)[0])
        floor = floor.best(cryptography_rates(seconds))
        ours = ours.best(opensti_rates(seconds))
    return raw, floor, ours, version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3, help="per measurement (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="best of N rounds (default 2)")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to")
    args = parser.parse_args()

    import cryptography
    from cryptography.hazmat.backends.openssl import backend

    pinning = pin_to_one_core(args.cpu)
    raw, floor, ours, openssl_version = measure(args.seconds, max(1, args.rounds))

    print(
        f"one core: {pinning}; best of {args.rounds} rounds of {args.seconds} s each; "
        "rates per second of user CPU time, as openssl speed reports them"
    )
    print(f"python {sys.version.split()[0]}, cryptography {cryptography.__version__} "
          f"({backend.openssl_version_text()}), baseline {openssl_version}")  # fmt: skip
    print()
    print(f"{'':34}{'sign/s':>10}{'verify/s':>10}")
    rows = [
        ("openssl speed ecdsap256 (raw)", raw),
        ("cryptography ECDSA, bare", floor),
        ("opensti core PASSporT", ours),
    ]
    for label, rates in rows:
        print(f"{label:34}{rates.sign:>10.0f}{rates.verify:>10.0f}")
    print()
    for name in ("sign", "verify"):
        ratio = getattr(ours, name) / getattr(raw, name)
        bare = getattr(floor, name) / getattr(raw, name)
        verdict = "meets" if ratio >= TARGETS[name] else "MISSES"
        print(
            f"{name:7} opensti/openssl = {ratio:6.1%}  (target >= {TARGETS[name]:.0%}: {verdict}); "
            f"bare cryptography/openssl = {bare:6.1%}"
        )


if __name__ == "__main__":
    main()
