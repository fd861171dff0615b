"""Front doors over HTTP: the lean STIR API (:mod:`.stir`) for SBCs, and the management
API under ``/api/v1`` (:func:`create_api`, FastAPI)."""

from opensti.api._app import API_PREFIX, create_api

__all__ = ("API_PREFIX", "create_api")
