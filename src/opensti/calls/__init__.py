"""The SIP message log: every signed and verified call, written off the request path.

:class:`CallLog` records calls from the SIP redirect server (it is its message-log
hook) and from the REST API, and writes them in batches from one thread; the query
functions read pages of calls and the certificate behind one.
"""

from opensti.calls._query import (
    MAX_PAGE,
    CallPage,
    CertificateInfo,
    call_dict,
    certificate_info,
    describe_certificate,
    find_calls,
    list_calls,
)
from opensti.calls._recorder import CallLog, CallLogStats, keyring_certificates
from opensti.calls._search import CALL_ID_WINDOW, CallIdWindow, tn_prefixes

__all__ = (
    "CALL_ID_WINDOW",
    "MAX_PAGE",
    "CallIdWindow",
    "CallLog",
    "CallLogStats",
    "CallPage",
    "CertificateInfo",
    "call_dict",
    "certificate_info",
    "describe_certificate",
    "find_calls",
    "keyring_certificates",
    "list_calls",
    "tn_prefixes",
)
