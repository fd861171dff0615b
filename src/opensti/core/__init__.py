"""The standards as code: pure functions and types, no I/O, no clock reads.

Everything that talks to a network, a disk or the clock lives in the packages around
this one and passes what it read in as arguments.
"""

from opensti.core.errors import OpenSTIError, PassportError
from opensti.core.identity import IdentityHeader, format_identity, parse_identity
from opensti.core.passport import PassportSigner, ShakenClaims, decode_passport, sign_passport
from opensti.core.tn import canonicalize_tn
from opensti.core.tnauthlist import TNAuthList
from opensti.core.verify import VerificationResult, Verstat, verify_identities

__all__ = (
    "IdentityHeader",
    "OpenSTIError",
    "PassportError",
    "PassportSigner",
    "ShakenClaims",
    "TNAuthList",
    "VerificationResult",
    "Verstat",
    "canonicalize_tn",
    "decode_passport",
    "format_identity",
    "parse_identity",
    "sign_passport",
    "verify_identities",
)
