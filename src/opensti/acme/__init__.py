"""ACME client for STI-CAs (RFC 8555 + RFC 9447/9448 + ATIS-1000080), on certbot's acme.

register or import an account   AcmeClient(profile, key).register(...) / .find_existing()
show what the STI-PA portal wants   AcmeClient.thumbprint / .fingerprint
get a certificate                obtain_certificate(client, spc, token_or_stipa, ...)
"""

from opensti.acme._client import (
    AcmeAccount,
    AcmeClient,
    AcmeOrder,
    EABCredentials,
    TNAuthListClientV2,
    import_account,
    retry_after_seconds,
)
from opensti.acme._csr import shaken_csr
from opensti.acme._keys import fingerprint_text, jwk_thumbprint, key_fingerprint, thumbprint_b64
from opensti.acme._messages import (
    IDENTIFIER_TNAUTHLIST,
    TKAuthChallenge,
    TKAuthChallengeResponse,
    TNAuthListNewOrder,
    TNAuthListOrder,
)
from opensti.acme._obtain import IssuedChain, Step, TokenSource, obtain_certificate
from opensti.acme.profiles import (
    BUILTIN_PROFILES,
    CAProfile,
    custom_profile,
    get_profile,
    sandbox_profile,
)

__all__ = (
    "BUILTIN_PROFILES",
    "IDENTIFIER_TNAUTHLIST",
    "AcmeAccount",
    "AcmeClient",
    "AcmeOrder",
    "CAProfile",
    "EABCredentials",
    "IssuedChain",
    "Step",
    "TKAuthChallenge",
    "TKAuthChallengeResponse",
    "TNAuthListClientV2",
    "TNAuthListNewOrder",
    "TNAuthListOrder",
    "TokenSource",
    "custom_profile",
    "fingerprint_text",
    "get_profile",
    "import_account",
    "jwk_thumbprint",
    "key_fingerprint",
    "obtain_certificate",
    "retry_after_seconds",
    "sandbox_profile",
    "shaken_csr",
    "thumbprint_b64",
)
