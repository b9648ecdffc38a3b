"""The officer API's routes (see docs/api.md and :data:`alert_rules.api.OPENAPI`).

Errors answer ``{"error": <name>, "message": ..., "field": ...}``: 401 for a
missing or unknown token, 403 for a viewer acting, 404 for an unknown warning,
409 for an action the warning's status does not allow (or lifting a
silence that already ended), 422 naming the field
and the reason for bad input, 503 while the warning store is still loading.

An action is checked against the store's latest version (the quick 409), sent
to the commands topic, and answered 200 with the version it made once the
lifecycle agent has applied it, or 202 with the command id if that takes
longer than ``api.apply_timeout_s``. The lifecycle agent checks again: a
command that lost a race with another change is refused there and logged by
the worker (the officer then sees the warning unchanged).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ValidationError

from alert_rules.api.auth import Account, Tokens
from alert_rules.api.evidence import EvidenceSource
from alert_rules.api.models import (
    ActionBody,
    DisposeBody,
    ListQuery,
    Silence,
    SilenceBody,
)
from alert_rules.api.openapi import OPENAPI
from alert_rules.api.views import SilenceView, Sink, WarningView
from alert_rules.lifecycle import Action, Command, allowed_actions, allowed_from
from alert_rules.warning import Evidence, WarningRecord
from riskwatch.contracts import to_json_bytes
from riskwatch.topics import SILENCES, WARNING_COMMANDS

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

VIEW: web.AppKey[WarningView] = web.AppKey("view", WarningView)
SILENCE_VIEW: web.AppKey[SilenceView] = web.AppKey("silences", SilenceView)
SINK: web.AppKey[Sink] = web.AppKey("sink", Sink)
EVIDENCE: web.AppKey[EvidenceSource] = web.AppKey("evidence", EvidenceSource)
TOKENS: web.AppKey[Tokens] = web.AppKey("tokens", Tokens)
OPTIONS: web.AppKey[dict[str, Any]] = web.AppKey("options", dict)
_ACCOUNT: web.RequestKey[Account] = web.RequestKey("account", Account)


class _Problem(web.HTTPException):
    """An error answer with riskwatch's JSON body."""

    def __init__(
        self, status: int, error: str, message: str, field: str | None = None
    ) -> None:
        self.status_code = status
        body = {"error": error, "message": message, "field": field}
        super().__init__(
            text=web.json_response(body).text, content_type="application/json"
        )


def build_app(
    *,
    view: WarningView,
    silences: SilenceView,
    sink: Sink,
    evidence: EvidenceSource,
    tokens: Tokens,
    apply_timeout_s: float = 10.0,
    evidence_points: int = 2000,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> web.Application:
    """The aiohttp application; its seams are the arguments.

    Args:
        view: the warning store, followed by the caller (its ``ready`` gates
            every read).
        silences: the silences recorded so far.
        sink: produces commands and silences to Kafka.
        evidence: reads evidence series from InfluxDB.
        tokens: the accounts.
        apply_timeout_s: how long an action waits for its version.
        evidence_points: most readings per evidence series.
        clock: the time written on commands and silences (UTC).
    """
    app = web.Application(middlewares=[_json_errors, _authenticate])
    app[VIEW], app[SILENCE_VIEW], app[SINK] = view, silences, sink
    app[EVIDENCE], app[TOKENS] = evidence, tokens
    app[OPTIONS] = {
        "apply_timeout_s": apply_timeout_s,
        "evidence_points": evidence_points,
        "clock": clock,
    }
    app.router.add_get("/openapi.json", _openapi)
    app.router.add_get("/health", _health)
    app.router.add_get("/warnings", _list)
    app.router.add_get("/warnings/{id}", _show)
    for action in (Action.ACKNOWLEDGE, Action.DISPOSE, Action.CLOSE):
        app.router.add_post(f"/warnings/{{id}}/{action.value}", _action(action))
    app.router.add_get("/silences", _list_silences)
    app.router.add_post("/silences", _silence)
    app.router.add_delete("/silences/{id}", _lift_silence)
    return app


PUBLIC = frozenset({"/openapi.json", "/health"})


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own errors (no such path, method not allowed, body too
    large) in riskwatch's JSON error body, like every other answer."""
    try:
        return await handler(request)
    except _Problem:
        raise
    except web.HTTPException as exc:
        if exc.status_code < 400:
            raise
        raise _Problem(
            exc.status_code, exc.reason.replace(" ", ""), exc.text or exc.reason
        ) from None


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path not in PUBLIC:
        account = request.app[TOKENS].account(request.headers.get("Authorization"))
        if account is None:
            raise _Problem(
                401, "Unauthorized", "a valid 'Authorization: Bearer <token>' is needed"
            )
        request[_ACCOUNT] = account
    return await handler(request)


def _account(request: web.Request, *, acting: bool) -> Account:
    account = request[_ACCOUNT]
    if acting and not account.may_act:
        raise _Problem(
            403, "Forbidden", f"user {account.name} ({account.role}) may only read"
        )
    return account


def _invalid(exc: ValidationError, prefix: str = "") -> _Problem:
    err = exc.errors(include_url=False)[0]
    field = prefix + (".".join(map(str, err["loc"])) or "body")
    return _Problem(422, "InvalidInput", f"{field}: {err['msg']}", field)


async def _body(request: web.Request, model: type[_M]) -> _M:
    raw = await request.read()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise _invalid(exc) from exc


def _ready_view(request: web.Request) -> WarningView:
    view = request.app[VIEW]
    if not view.ready.is_set():
        raise _Problem(503, "Unavailable", "the warning store is still loading")
    return view


def _warning(request: web.Request) -> WarningRecord:
    ident = request.match_info["id"]
    record = _ready_view(request).get(ident)
    if record is None:
        raise _Problem(404, "NotFound", f"warning {ident!r} does not exist", "id")
    return record


def _json(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _dump(record: WarningRecord) -> dict[str, Any]:
    data = record.model_dump(mode="json")
    data["allowed_actions"] = [a.value for a in allowed_actions(record.status)]
    return data


# Handlers ------------------------------------------------------------------


async def _openapi(request: web.Request) -> web.Response:
    return _json(OPENAPI)


async def _health(request: web.Request) -> web.Response:
    view = request.app[VIEW]
    return _json(
        {
            "status": "ok" if view.ready.is_set() else "loading",
            "warnings": len(view),
            "silences": len(request.app[SILENCE_VIEW]),
        }
    )


async def _list(request: web.Request) -> web.Response:
    _account(request, acting=False)
    try:
        query = ListQuery.model_validate(dict(request.query))
    except ValidationError as exc:
        raise _invalid(exc) from exc
    found = [r for r in _ready_view(request).records() if _matches(r, query)]
    found.sort(key=lambda r: (r.issue_time, r.id), reverse=True)
    return _json(
        {"count": len(found), "warnings": [_dump(r) for r in found[: query.limit]]}
    )


def _matches(record: WarningRecord, query: ListQuery) -> bool:
    wanted = (
        (query.level, record.level),
        (query.status, record.status),
        (query.scope, record.scope.kind),
        (query.enterprise, record.enterprise_id),
        (query.grid, record.grid),
    )
    if any(want is not None and want != have for want, have in wanted):
        return False
    if query.since is not None and record.start_time < query.since:
        return False
    return query.until is None or record.start_time < query.until


async def _show(request: web.Request) -> web.Response:
    _account(request, acting=False)
    record = _warning(request)
    data = _dump(record)
    if request.query.get("evidence", "true").lower() not in ("false", "0", "no"):
        # A feed warning's items have no evidence: no one device's readings.
        data["evidence"] = [
            await _series(request, record, item.evidence)
            for item in record.items
            if item.evidence is not None
        ]
    return _json(data)


async def _series(
    request: web.Request, record: WarningRecord, evidence: Evidence
) -> dict[str, Any]:
    out: dict[str, Any] = evidence.model_dump(mode="json", by_alias=True)
    try:
        out["points"] = await request.app[EVIDENCE].series(
            evidence.enterprise or record.enterprise_id,
            evidence,
            request.app[OPTIONS]["evidence_points"],
        )
        out["error"] = None
    except Exception as exc:  # noqa: BLE001 - the record is still worth showing
        log.warning(
            "evidence not read warning=%s device=%s metric=%s: %r",
            record.id,
            evidence.device,
            evidence.metric.value,
            exc,
        )
        out["points"], out["error"] = [], f"evidence not available: {exc}"
    return out


# How long a request waits for Kafka to take a command before answering 503.
SEND_TIMEOUT_S = 10.0


async def _send(request: web.Request, topic: str, key: str, value: bytes) -> None:
    """Produce a record, or answer 503 when Kafka cannot take it in time."""
    try:
        await asyncio.wait_for(
            request.app[SINK].send(topic, key.encode(), value), SEND_TIMEOUT_S
        )
    except (KafkaError, TimeoutError) as exc:
        log.warning("not sent topic=%s key=%s: %r", topic, key, exc)
        raise _Problem(
            503,
            "Unavailable",
            "Kafka cannot be reached; nothing was changed, try again",
            None,
        ) from exc


def _command_id(user: str, action: Action, given: str | None) -> str:
    """The command id of an officer's request.

    Officers' ids live apart from the engine's (``rw-….v1``) and the worker's
    (``expire-…``, ``release-…``), and one officer's id reused for another
    action is another command: the id given by the client is hashed with the
    user and the action. Without one, every request is new.

    >>> _command_id("li", Action.ACKNOWLEDGE, "r1") == _command_id(
    ...     "li", Action.ACKNOWLEDGE, "r1")
    True
    >>> _command_id("li", Action.ACKNOWLEDGE, "r1") == _command_id(
    ...     "li", Action.CLOSE, "r1")
    False
    """
    if given is None:
        return f"api-{uuid.uuid4().hex}"
    digest = hashlib.sha256(f"{user}|{action.value}|{given}".encode()).hexdigest()
    return f"api-{digest[:32]}"


def _action(action: Action) -> Handler:
    body_model: type[ActionBody | DisposeBody] = (
        DisposeBody if action == Action.DISPOSE else ActionBody
    )

    async def handle(request: web.Request) -> web.Response:
        account = _account(request, acting=True)
        record = _warning(request)
        body = await _body(request, body_model)
        command_id = _command_id(account.name, action, body.command_id)
        if any(entry.command == command_id for entry in record.history):
            # A retry of a request that was applied: the same answer again.
            return _json({"command": command_id, "warning": _dump(record)})
        if record.status not in allowed_from(action):
            allowed = ", ".join(sorted(s.value for s in allowed_from(action)))
            raise _Problem(
                409,
                "Conflict",
                f"warning {record.id} is {record.status.value}: {action.value} is "
                f"allowed only when it is {allowed}",
                "status",
            )
        options = request.app[OPTIONS]
        comment = body.note if isinstance(body, DisposeBody) else body.comment
        command = Command(
            id=command_id,
            warning=record.id,
            action=action,
            by=account.name,
            at=options["clock"](),
            comment=comment,
        )
        await _send(request, WARNING_COMMANDS, record.id, to_json_bytes(command))
        log.info(
            "command sent warning=%s command=%s action=%s by=%s enterprise=%s",
            record.id,
            command.id,
            action.value,
            account.name,
            record.enterprise_id,
        )
        version = await request.app[VIEW].applied(
            record.id, command.id, options["apply_timeout_s"]
        )
        if version is None:
            return _json({"command": command.id, "state": "pending"}, status=202)
        return _json({"command": command.id, "warning": _dump(version)})

    handle.__name__ = f"_{action.value}"
    return handle


async def _list_silences(request: web.Request) -> web.Response:
    _account(request, acting=False)
    silences = request.app[SILENCE_VIEW].silences()
    return _json({"silences": [s.model_dump(mode="json") for s in silences]})


async def _silence(request: web.Request) -> web.Response:
    account = _account(request, acting=True)
    body = await _body(request, SilenceBody)
    now: datetime = request.app[OPTIONS]["clock"]()
    if body.until <= now:
        raise _Problem(422, "InvalidInput", "until: must be in the future", "until")
    if body.starts is not None and body.starts >= body.until:
        raise _Problem(422, "InvalidInput", "starts: must be before until", "starts")
    silence = Silence(
        id=f"sil-{uuid.uuid4().hex[:16]}",
        subject=body.subject,
        reason=body.reason,
        until=body.until,
        by=account.name,
        at=now,
        starts=body.starts,
    )
    await _record_silence(request, silence, "recorded", account)
    return _json({"silence": silence.model_dump(mode="json")}, status=201)


async def _lift_silence(request: web.Request) -> web.Response:
    account = _account(request, acting=True)
    ident = request.match_info["id"]
    silence = request.app[SILENCE_VIEW].get(ident)
    if silence is None:
        raise _Problem(404, "NotFound", f"silence {ident!r} does not exist", "id")
    now: datetime = request.app[OPTIONS]["clock"]()
    if silence.until <= now:
        raise _Problem(
            409,
            "Conflict",
            f"silence {ident} already ended at {silence.until.isoformat()}",
            "until",
        )
    # The same key again: the compacted topic keeps only this version, which
    # still says who asked for the silence and who lifted it.
    lifted = silence.model_copy(
        update={"until": now, "lifted_by": account.name, "lifted_at": now}
    )
    await _record_silence(request, lifted, "lifted", account)
    return _json({"silence": lifted.model_dump(mode="json")})


async def _record_silence(
    request: web.Request, silence: Silence, what: str, account: Account
) -> None:
    await _send(request, SILENCES, silence.id, to_json_bytes(silence))
    log.info(
        "silence %s silence=%s kind=%s subject=%s until=%s by=%s",
        what,
        silence.id,
        silence.subject.kind.value,
        silence.subject.id,
        silence.until.isoformat(),
        account.name,
    )
