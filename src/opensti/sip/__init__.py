"""The SIP redirect server: STI-AS (sign) and STI-VS (verify) for SBCs over SIP.

See :mod:`opensti.sip.redirect` for what each request gets and
:mod:`opensti.sip.server` for transports, listener specs and worker processes.
"""

from opensti.sip.address import NameAddr, parse_name_addr, uri_tn, with_verstat
from opensti.sip.message import (
    SIPMessage,
    SIPRequest,
    SIPResponse,
    StreamFramer,
    build_response,
    parse_message,
)
from opensti.sip.redirect import (
    CallLog,
    CallRecord,
    CallSigner,
    CallVerifier,
    FailurePolicy,
    Mode,
    RedirectHandler,
    RedirectPolicy,
)
from opensti.sip.server import (
    ListenerSpec,
    ServerLimits,
    SIPServer,
    SIPServices,
    bind_sip_listener,
    parse_listeners,
    serve,
)
from opensti.sip.transaction import ServerTransactions, TransactionStats

__all__ = (
    "CallLog",
    "CallRecord",
    "CallSigner",
    "CallVerifier",
    "FailurePolicy",
    "ListenerSpec",
    "Mode",
    "NameAddr",
    "RedirectHandler",
    "RedirectPolicy",
    "SIPMessage",
    "SIPRequest",
    "SIPResponse",
    "SIPServer",
    "SIPServices",
    "ServerLimits",
    "ServerTransactions",
    "StreamFramer",
    "TransactionStats",
    "bind_sip_listener",
    "build_response",
    "parse_listeners",
    "parse_message",
    "parse_name_addr",
    "serve",
    "uri_tn",
    "with_verstat",
)
