"""Runs the redirect server with several worker processes, for test_sip_workers.py.

python worker_app.py LISTENERS WORKERS
"""

from __future__ import annotations

import datetime as dt
import logging
import sys

from sip_support import X5U, DemoSigner

from opensti.core.passport import PassportSigner
from opensti.sandbox.pki import DemoPKI
from opensti.sip import SIPServices, parse_listeners, serve


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    key, _ = DemoPKI(now=dt.datetime.now(dt.UTC)).issue("1234")
    signer = DemoSigner(PassportSigner(key, X5U))
    serve(
        parse_listeners(sys.argv[1]),
        lambda: SIPServices(signer=signer),
        workers=int(sys.argv[2]),
    )


if __name__ == "__main__":
    main()
