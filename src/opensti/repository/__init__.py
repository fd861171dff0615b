"""The STI-CR: publishes every unexpired certificate chain at its stable x5u URL."""

from opensti.repository._app import (
    DEFAULT_MAX_AGE,
    DEFAULT_REFRESH_SECONDS,
    RepositoryApp,
    create_repository_app,
)
from opensti.repository._chains import STI_CR_PATH, PublishedChain, PublishedChains, x5u_for

__all__ = (
    "DEFAULT_MAX_AGE",
    "DEFAULT_REFRESH_SECONDS",
    "STI_CR_PATH",
    "PublishedChain",
    "PublishedChains",
    "RepositoryApp",
    "create_repository_app",
    "x5u_for",
)
