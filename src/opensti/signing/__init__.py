"""STI-AS: signing entries kept in memory and the service that signs calls with them."""

from opensti.signing._keyring import Keyring, KeyringSnapshot, SigningEntry
from opensti.signing._service import CallSignerAdapter, SignedCall, SigningService

__all__ = (
    "CallSignerAdapter",
    "Keyring",
    "KeyringSnapshot",
    "SignedCall",
    "SigningEntry",
    "SigningService",
)
