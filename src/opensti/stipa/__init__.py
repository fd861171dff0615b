"""STI-PA client: login, SPC tokens (requested or brought from elsewhere), CA list, CRL."""

from opensti.stipa._client import (
    MAX_PASSWORD_LENGTH,
    MAX_USER_ID_LENGTH,
    STIPA_PRODUCTION_URL,
    STIPA_STAGING_URL,
    StiPaClient,
    StiPaCredentials,
    stipa_base_url,
    token_trust,
)
from opensti.stipa._token import (
    DEFAULT_MIN_LIFE,
    SPCToken,
    TokenBundle,
    TokenExpectation,
    TokenTrust,
    check_token_claims,
    decode_spc_token,
    parse_token_file,
    validate_spc_token,
    verify_token_issuer,
)

__all__ = (
    "DEFAULT_MIN_LIFE",
    "MAX_PASSWORD_LENGTH",
    "MAX_USER_ID_LENGTH",
    "STIPA_PRODUCTION_URL",
    "STIPA_STAGING_URL",
    "SPCToken",
    "StiPaClient",
    "StiPaCredentials",
    "TokenBundle",
    "TokenExpectation",
    "TokenTrust",
    "check_token_claims",
    "decode_spc_token",
    "parse_token_file",
    "stipa_base_url",
    "token_trust",
    "validate_spc_token",
    "verify_token_issuer",
)
