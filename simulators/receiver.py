"""A stand-in for the supervision platform: receives warnings by HTTP POST.

``POST /warnings`` takes a warning version as a signed CloudEvent, the way
riskwatch sends it (:mod:`stream_jobs.delivery`):

1. the signature headers are checked (:func:`riskwatch.signing.verify`); a
   missing, stale or wrong signature is answered 401 and counted in
   ``unauthorized``;
2. the body must be a CloudEvent 1.0 (structured or binary mode) whose data
   is a :class:`WarningRecord`, else 400 (``rejected``);
3. an event seen before (same ``source`` and ``id``) is acknowledged again,
   200 with the same receipt, but not recorded again (``duplicates``);
4. a new one is recorded: appended to the JSONL file (when one is given),
   one line about it printed, and answered 202 with a receipt
   ``{"reference": "SP-000001", "event": ..., "duplicate": false}``. The
   reference is per warning: its later versions get the same one.

To rehearse the platform being down, ``fail_first`` (or :meth:`fail_next`)
makes the next posts answer 500 before anything is checked, counted in
``failed``: the worker's retries, backoff and dead-lettering can be watched
against the real thing.

``GET /warnings`` lists the warning records received (the most recent
``keep`` of them); ``GET /health`` answers ``{"status": "ok", ...}`` with the
counters.

Use it in-process (``await receiver.start()`` / ``await receiver.stop()``) or
from the CLI (``riskwatch receiver``).
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from pydantic import SecretStr, ValidationError

from alert_rules.warning import WarningRecord
from riskwatch.signing import SignatureError, verify
from simulators.errors import SimulatorError
from stream_jobs.cloudevent import EventError, from_request

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787

_K = TypeVar("_K")


def describe(warning: dict[str, Any]) -> str:
    """One line about a warning; fields it lacks are left out.

    >>> describe({"id": "W1", "level": "red", "title": "Gas leak"})
    'warning level=red title="Gas leak" id=W1'
    >>> describe({"id": "W1", "level": "I", "status": "resolved"})
    'warning level=I status=resolved id=W1'
    """
    parts = ["warning"]
    for key in ("level", "scope", "status"):
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


def describe_items(warning: dict[str, Any]) -> list[str]:
    """One indented line per warning item: what was observed against what was
    expected (with values and unit) and the recommended action.

    >>> describe_items({"items": [{"observed": "GD-101 measured 31 %LEL",
    ...     "observed_value": 31.0, "expected_value": 25.0, "unit": "%LEL",
    ...     "expected": "Below 25 %LEL", "action": "Evacuate"}]})
    ['  item: GD-101 measured 31 %LEL; observed 31 %LEL, expected 25 %LEL \
(Below 25 %LEL); action: Evacuate']
    """
    items = warning.get("items")
    if not isinstance(items, list):
        return []
    lines = []
    for item in items:
        if not isinstance(item, dict):
            continue
        unit = item.get("unit") or ""
        parts = [str(item.get("observed", ""))]
        values = [
            f"{name} {item[key]:g} {unit}".rstrip()
            for name, key in (
                ("observed", "observed_value"),
                ("expected", "expected_value"),
            )
            if isinstance(item.get(key), int | float)
        ]
        if values:
            parts.append(", ".join(values) + f" ({item.get('expected', '')})")
        if item.get("action"):
            parts.append(f"action: {' '.join(str(item['action']).split())}")
        lines.append("  item: " + "; ".join(parts))
    return lines


def _short(value: object) -> str:
    if isinstance(value, dict):
        return "/".join(str(v) for v in value.values() if v is not None)
    return str(value)


class WarningReceiver:
    """The receiver's web server.

    Args:
        host: address to listen on.
        port: TCP port; 0 picks a free one (see :attr:`url` after start).
        secret: the signing secret shared with riskwatch
            (:func:`riskwatch.signing.signing_secret`).
        out: JSONL file the warnings are appended to; None keeps them in
            memory only.
        echo: where the one-line summaries go (default: the log, at INFO).
        keep: how many warnings ``GET /warnings`` returns at most, and how many
            event ids and warning references are remembered for
            deduplication; older ones stay in the file only.
        tolerance_s: how far a signature timestamp may be from ``clock``.
        clock: Unix time in seconds.
        fail_first: how many posts to answer 500 first (a rehearsed outage).
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        secret: SecretStr,
        out: Path | None = None,
        echo: Callable[[str], None] | None = None,
        keep: int = 10_000,
        tolerance_s: float = 300.0,
        clock: Callable[[], float] = time.time,
        fail_first: int = 0,
    ) -> None:
        self.host = host
        self.port = port
        self.out = out
        self._secret = secret
        self._echo = echo
        self._keep = keep
        self._tolerance_s = tolerance_s
        self._clock = clock
        self.warnings: deque[dict[str, Any]] = deque(maxlen=keep)
        # (CloudEvent id, type) of each warning recorded, in arrival order.
        self.events: deque[tuple[str, str]] = deque(maxlen=keep)
        # Bounded like the warnings: an event older than the last `keep` ones
        # would be recorded twice, which a stand-in may afford.
        self._events: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._references: OrderedDict[str, str] = OrderedDict()
        self._issued = 0
        self.received = 0
        self.duplicates = 0
        self.rejected = 0
        self.unauthorized = 0
        self.failed = 0
        # Set from another thread by fail_next, read on the server's loop: an
        # int assignment is atomic, and a post racing it fails or not.
        self._failing = fail_first
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
            logger.info(
                "receiver stopped received=%d duplicates=%d rejected=%d "
                "unauthorized=%d failed=%d",
                self.received,
                self.duplicates,
                self.rejected,
                self.unauthorized,
                self.failed,
            )

    def fail_next(self, posts: int) -> None:
        """Answer the next ``posts`` posts 500, as a platform that is down."""
        self._failing = posts

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self._failing > 0:
            self._failing -= 1
            self.failed += 1
            logger.info("warning refused: rehearsed outage left=%d", self._failing)
            return web.json_response(
                {"error": "platform unavailable (rehearsed outage)"}, status=500
            )
        try:
            verify(
                self._secret,
                request.headers,
                body,
                now_s=self._clock(),
                tolerance_s=self._tolerance_s,
            )
        except SignatureError as exc:
            self.unauthorized += 1
            logger.warning(
                "warning unauthorized field=%s reason=%s", exc.field, exc.reason
            )
            return web.json_response({"error": str(exc)}, status=401)
        try:
            event = from_request(request.headers, body)
        except EventError as exc:
            return self._reject(str(exc))
        data = event.get_data()
        try:
            record = WarningRecord.model_validate(data)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(map(str, err["loc"])) or "data"
            return self._reject(f"data is not a warning record: {where}: {err['msg']}")
        key = (event.get_source(), event.get_id())
        if key in self._events:
            self.duplicates += 1
            logger.info("warning duplicate event=%s id=%s", key[1], record.id)
            return self._receipt(key, duplicate=True, status=200)
        self._remember(self._events, key, self._reference_of(record.id))
        assert isinstance(data, dict)  # noqa: S101 - validated as a record above
        self.events.append((event.get_id(), event.get_type()))
        self._record(data)
        return self._receipt(key, duplicate=False, status=202)

    def _record(self, warning: dict[str, Any]) -> None:
        self.warnings.append(warning)
        self.received += 1
        if self.out is not None:
            line = json.dumps(warning, ensure_ascii=False) + "\n"
            with self.out.open("a", encoding="utf-8") as handle:
                handle.write(line)
        summary = describe(warning)
        if self._echo is not None:
            # The demo shows the items under their warning; the log keeps one
            # line a warning.
            self._echo("\n".join([summary, *describe_items(warning)]))
        logger.info("%s", summary)

    def _reference_of(self, warning: str) -> str:
        """The platform's reference for a warning, made on its first event."""
        reference = self._references.get(warning)
        if reference is None:
            self._issued += 1
            reference = f"SP-{self._issued:06d}"
            self._remember(self._references, warning, reference)
        return reference

    def _remember(self, table: OrderedDict[_K, str], key: _K, value: str) -> None:
        table[key] = value
        while len(table) > self._keep:
            table.popitem(last=False)

    def _receipt(
        self, key: tuple[str, str], *, duplicate: bool, status: int
    ) -> web.Response:
        answer = {
            "reference": self._events[key],
            "event": key[1],
            "duplicate": duplicate,
        }
        return web.json_response(answer, status=status)

    def _reject(self, message: str) -> web.Response:
        self.rejected += 1
        logger.warning("warning rejected reason=%s", message)
        return web.json_response({"error": message}, status=400)

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.warnings))

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "received": self.received,
                "duplicates": self.duplicates,
                "rejected": self.rejected,
                "unauthorized": self.unauthorized,
                "failed": self.failed,
            }
        )
