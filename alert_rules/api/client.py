"""A small client of the officer API, for ``riskwatch warnings``."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import aiohttp

from alert_rules.api.errors import BY_STATUS, ApiError, Unavailable


class ApiClient:
    """Calls the officer API with one bearer token.

    Args:
        url: base URL, e.g. ``http://127.0.0.1:8788``.
        token: the bearer token (never logged or printed).
        timeout_s: per request, connecting included.

    Every method raises the :class:`ApiError` subclass of the answer's status
    (``Unauthorized``, ``Forbidden``, ``NotFound``, ``Conflict``,
    ``InvalidInput``, ``Unavailable``), with the API's message.
    """

    def __init__(self, url: str, token: str, *, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def list(self, **filters: str | int | None) -> dict[str, Any]:
        params = {k: str(v) for k, v in filters.items() if v is not None}
        return await self._call("GET", "/warnings", params=params)

    async def show(self, warning: str, *, evidence: bool = True) -> dict[str, Any]:
        params = {"evidence": "true" if evidence else "false"}
        return await self._call("GET", f"/warnings/{_segment(warning)}", params=params)

    async def cap(self, warning: str) -> str:
        """The warning's latest version as a CAP 1.2 XML document."""
        return await self._text("GET", f"/warnings/{_segment(warning)}/cap")

    async def act(
        self, warning: str, action: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        return await self._call(
            "POST", f"/warnings/{_segment(warning)}/{action}", body=body
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        text = await self._text(method, path, params=params, body=body)
        try:
            answer = json.loads(text) if text else {}
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ApiError(f"unexpected answer from {path}: {text[:200]}", status=200)
        return answer

    async def _text(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> str:
        """The answer's text; an error answer raised as its ApiError."""
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.request(
                    method,
                    self.url + path,
                    params=params,
                    json=body,
                    headers=self._headers,
                ) as response,
            ):
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(
                f"officer API at {self.url} not reachable: {exc!r}"
            ) from exc
        if status >= 400:
            try:
                problem = json.loads(text) if text else {}
            except ValueError:
                problem = {"message": text[:200]}
            if not isinstance(problem, dict):
                problem = {"message": text[:200]}
            error = BY_STATUS.get(status, ApiError)
            message = problem.get("message") or f"HTTP {status}"
            raise error(message, status=status, field=problem.get("field"))
        return text


def _segment(text: str) -> str:
    """``text`` as one path segment: ``../x`` stays an id, not a path."""
    return quote(text, safe="")
