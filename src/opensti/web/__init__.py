"""The web UI: server-rendered pages over the same services as the CLI and REST API.

``create_web(app)`` returns an ASGI app to mount at ``/`` (the REST API lives under
``/api/v1``). Pages work without JavaScript; ``static/app.js`` only adds Copy buttons.
"""

from opensti.web._app import create_web

__all__ = ("create_web",)
