"""A stand-in for the supervision platform: receives warnings by HTTP POST.

``POST /warnings`` takes any JSON object, appends it to a JSONL file (when one
is given), prints one line about it and answers 202. ``GET /warnings`` lists
what was received (the most recent ``keep`` of them); ``GET /health`` answers
``{"status": "ok"}``.

Use it in-process (``await receiver.start()`` / ``await receiver.stop()``) or
from the CLI (``riskwatch receiver``).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from simulators.errors import SimulatorError

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787


def describe(warning: dict[str, Any]) -> str:
    """One line about a warning; fields it lacks are left out.

    >>> describe({"id": "W1", "level": "red", "title": "Gas leak"})
    'warning level=red title="Gas leak" id=W1'
    """
    parts = ["warning"]
    for key in ("level", "scope"):
        if key in warning:
            parts.append(f"{key}={_short(warning[key])}")
    start = next(
        (warning[k] for k in ("start", "start_time", "starts_at") if k in warning),
        None,
    )
    if start is not None:
        parts.append(f"start={start}")
    if "title" in warning:
        parts.append(f"title={json.dumps(warning['title'], ensure_ascii=False)}")
    items = warning.get("items")
    if isinstance(items, list):
        parts.append(f"items={len(items)}")
    ident = warning.get("id", warning.get("warning_id"))
    if ident is not None:
        parts.append(f"id={ident}")
    return " ".join(parts)


def _short(value: object) -> str:
    if isinstance(value, dict):
        return "/".join(str(v) for v in value.values() if v is not None)
    return str(value)


class WarningReceiver:
    """The receiver's web server.

    Args:
        host: address to listen on.
        port: TCP port; 0 picks a free one (see :attr:`url` after start).
        out: JSONL file the warnings are appended to; None keeps them in
            memory only.
        echo: where the one-line summaries go (default: the log, at INFO).
        keep: how many warnings ``GET /warnings`` returns at most; older ones
            stay in the file only.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        out: Path | None = None,
        echo: Callable[[str], None] | None = None,
        keep: int = 10_000,
    ) -> None:
        self.host = host
        self.port = port
        self.out = out
        self._echo = echo
        self.warnings: deque[dict[str, Any]] = deque(maxlen=keep)
        self.received = 0
        self.rejected = 0
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        """The aiohttp application (for aiohttp's test client)."""
        app = web.Application()
        app.router.add_post("/warnings", self._post)
        app.router.add_get("/warnings", self._list)
        app.router.add_get("/health", self._health)
        return app

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8787``; the warnings endpoint is
        ``url + "/warnings"``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> str:
        """Listen; returns the warnings endpoint URL.

        Raises:
            SimulatorError: the address is in use or cannot be bound.
        """
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise SimulatorError(
                f"receiver cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from exc
        if self.port == 0:
            self.port = int(runner.addresses[0][1])
        self._runner = runner
        logger.info("receiver listening url=%s/warnings out=%s", self.url, self.out)
        return f"{self.url}/warnings"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            logger.info("receiver stopped received=%d", self.received)

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            warning = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return self._reject(f"body is not JSON: {exc}")
        if not isinstance(warning, dict):
            return self._reject(
                f"body must be a JSON object, got {type(warning).__name__}"
            )
        self.warnings.append(warning)
        self.received += 1
        if self.out is not None:
            line = json.dumps(warning, ensure_ascii=False) + "\n"
            with self.out.open("a", encoding="utf-8") as handle:
                handle.write(line)
        summary = describe(warning)
        if self._echo is not None:
            self._echo(summary)
        logger.info("%s", summary)
        return web.json_response({"accepted": True}, status=202)

    def _reject(self, message: str) -> web.Response:
        self.rejected += 1
        logger.warning("warning rejected reason=%s", message)
        return web.json_response({"error": message}, status=400)

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.warnings))

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "received": self.received})
