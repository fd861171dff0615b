"""Helpers for the core tests: vector files, a fixed clock, credential resolvers."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opensti.core.certs import (
    CertificateChain,
    TrustContext,
    ValidatedCertificate,
    validate_shaken_certificate,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"

#: The fixed instant every core test runs at (the core never reads the clock).
NOW = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
NOW_EPOCH = int(NOW.timestamp())

Resolver = Callable[[str], ValidatedCertificate]


def vector_text(name: str) -> str:
    """A vector file's text without its trailing newline."""
    return (VECTORS / name).read_text(encoding="utf-8").rstrip("\n")


def vector_json(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def chain_resolver(
    chain: CertificateChain, trust: TrustContext, now: dt.datetime = NOW
) -> Resolver:
    """What an STI-VS does with a fetched x5u: validate the chain it got."""

    def resolve(url: str) -> ValidatedCertificate:
        return validate_shaken_certificate(chain, trust, now)

    return resolve
