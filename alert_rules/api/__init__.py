"""The officer HTTP API (``riskwatch api``) and its client (``riskwatch warnings``).

Public surface:

* :func:`build_app`: the aiohttp application, given its seams (the warning
  store view, a command sink, an evidence source, the accounts).
* :data:`OPENAPI`: the OpenAPI 3 document served at ``/openapi.json``.
* :class:`ApiClient`: what the CLI uses to call it.

See docs/api.md.
"""

from alert_rules.api.app import build_app
from alert_rules.api.client import ApiClient
from alert_rules.api.openapi import OPENAPI

__all__ = ["OPENAPI", "ApiClient", "build_app"]
