"""The STIR API as granian/uvicorn workers import it for bench/rest.py (set up by env vars).

OPENSTI_BENCH_KEY (PEM private key), OPENSTI_BENCH_X5U (its chain's URL, plain HTTP on
127.0.0.1 for the bench) and OPENSTI_BENCH_ROOT (PEM trust anchor).
"""

from __future__ import annotations

import os
from pathlib import Path

from opensti.api.stir import STIRAccess, create_stir_app, parse_networks
from opensti.core.passport import load_private_key
from opensti.signing import Keyring, SigningEntry, SigningService
from opensti.verification import (
    FetchPolicy,
    TrustStore,
    VerificationService,
    VerifyPolicy,
    X5UFetcher,
)

_key = load_private_key(Path(os.environ["OPENSTI_BENCH_KEY"]).read_bytes())
_x5u = os.environ["OPENSTI_BENCH_X5U"]
_keyring = Keyring([SigningEntry(name="bench", spc="1234", key=_key, x5u=_x5u, is_default=True)])
_verifier = VerificationService(
    X5UFetcher(FetchPolicy(allow_http=True, allow_private=True)),
    TrustStore(source=Path(os.environ["OPENSTI_BENCH_ROOT"])),
    policy=VerifyPolicy(allow_http_x5u=True),
)
# The bench's clients are on loopback: let them in by address (the API is closed by
# default), so the figures include the door's check.
_access = STIRAccess(allow=parse_networks(["127.0.0.0/8", "::1"]))
app = create_stir_app(SigningService(_keyring), _verifier, access=_access)
