"""The officer API's routes (see docs/api.md and :data:`alert_rules.api.OPENAPI`).

Errors answer ``{"error": <name>, "message": ..., "field": ...}``: 401 for a
missing or unknown token, 403 for a viewer acting, 404 for an unknown warning,
409 for an action the warning's status does not allow (or lifting a
silence that already ended), 422 naming the field and the reason for bad
input (a silence for an enterprise or device the registry does not list, or a
rule that is not loaded, or one longer than ``api.silences`` allows its kind
and the account's role, among them), 503 while the warning store (or, for a
device or enterprise silence, the registry) is still loading.

An action is checked against the store's latest version (the quick 409), sent
to the commands topic, and answered 200 with the version it made once the
lifecycle agent has applied it, or 202 with the command id if that takes
longer than ``api.apply_timeout_s``. The lifecycle agent checks again: a
command that lost a race with another change (two officers acknowledging at
once) is refused there and the refusal published; the request waiting for it
is answered 409 naming the status the warning had then, as soon as the API
reads it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ValidationError

from alert_rules.api.auth import Account, Tokens
from alert_rules.api.evidence import EvidenceSource
from alert_rules.api.models import (
    ActionBody,
    DisposeBody,
    ListQuery,
    NoQuery,
    ShowQuery,
    Silence,
    SilenceBody,
    SilenceKind,
    SilenceSubject,
)
from alert_rules.api.openapi import OPENAPI
from alert_rules.api.views import Registry, SilenceView, Sink, WarningView
from alert_rules.cap import CAP_MEDIA_TYPE, render_cap
from alert_rules.lifecycle import (
    Action,
    Command,
    Refusal,
    TransitionError,
    allowed_actions,
    allowed_from,
)
from alert_rules.silences import span_refusal
from alert_rules.warning import Evidence, WarningRecord
from riskwatch.contracts import to_json_bytes
from riskwatch.registry import Enterprise
from riskwatch.settings import SilenceLimits
from riskwatch.topics import SILENCES, WARNING_COMMANDS

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

VIEW: web.AppKey[WarningView] = web.AppKey("view", WarningView)
SILENCE_VIEW: web.AppKey[SilenceView] = web.AppKey("silences", SilenceView)
SINK: web.AppKey[Sink] = web.AppKey("sink", Sink)
REGISTRY: web.AppKey[Registry] = web.AppKey("registry", Registry)
RULES: web.AppKey[frozenset[str]] = web.AppKey("rules", frozenset)
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
    registry: Registry,
    rules: Collection[str],
    apply_timeout_s: float = 10.0,
    evidence_points: int = 2000,
    silence_limits: SilenceLimits | None = None,
    cap_sender: str = "riskwatch",
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
        registry: the enterprises and their devices a silence may name
            (followed by the caller, like ``view``).
        rules: the ids of the rules the worker evaluates, which a rule
            silence may name.
        apply_timeout_s: how long an action waits for its version.
        evidence_points: most readings per evidence series.
        silence_limits: the longest silence per subject kind (default:
            :class:`SilenceLimits`' defaults).
        cap_sender: the CAP ``sender`` of the documents served
            (``platform.sender_id``).
        clock: the time written on commands and silences (UTC).
    """
    app = web.Application(middlewares=[_json_errors, _authenticate])
    app[VIEW], app[SILENCE_VIEW], app[SINK] = view, silences, sink
    app[EVIDENCE], app[TOKENS] = evidence, tokens
    app[REGISTRY], app[RULES] = registry, frozenset(rules)
    app[OPTIONS] = {
        "apply_timeout_s": apply_timeout_s,
        "evidence_points": evidence_points,
        "silence_limits": silence_limits or SilenceLimits(),
        "cap_sender": cap_sender,
        "clock": clock,
    }
    app.router.add_get("/openapi.json", _openapi)
    app.router.add_get("/health", _health)
    app.router.add_get("/warnings", _list)
    app.router.add_get("/warnings/{id}", _show)
    app.router.add_get("/warnings/{id}/cap", _cap)
    for action in (Action.ACKNOWLEDGE, Action.DISPOSE, Action.CLOSE):
        app.router.add_post(f"/warnings/{{id}}/{action.value}", _action(action))
    app.router.add_get("/silences", _list_silences)
    app.router.add_post("/silences", _silence)
    app.router.add_delete("/silences/{id}", _lift_silence)
    return app


PUBLIC = frozenset({"/openapi.json", "/health"})

# The longest request line and header line (name and value) taken, in bytes:
# aiohttp's default for headers, one more for the request line (ApiRunner).
MAX_HEADER_FIELD = 8190
MAX_REQUEST_LINE = MAX_HEADER_FIELD + 1


class ApiRunner(web.AppRunner):
    """An :class:`aiohttp.web.AppRunner` whose connections answer a request
    that never reached the application (malformed HTTP, an unhandled error)
    in riskwatch's JSON error body too.

    aiohttp answers those itself, before any middleware, in plain text that
    quotes the offending bytes of the request (its header line, its method).
    """

    async def _make_server(self) -> web.Server:
        # Two limits that differ by a byte, so that aiohttp's LineTooLong,
        # which carries the limit it broke but not the part, tells an
        # over-long request line from an over-long header (see _malformed).
        self._kwargs.setdefault("max_line_size", MAX_REQUEST_LINE)
        self._kwargs.setdefault("max_field_size", MAX_HEADER_FIELD)
        server = await super()._make_server()
        # aiohttp has no setting for the protocol class its Server makes per
        # connection; the subclass only changes that factory, so every other
        # setting the application gave its Server stays as it was.
        server.__class__ = _Server
        return server


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


class _Connection(RequestHandler):
    """aiohttp's per-connection protocol with riskwatch's error answers."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            # As aiohttp's own: a response was begun, none can follow.
            raise ConnectionError("response already begun, no error answer")
        body: dict[str, str | None]
        if isinstance(exc, http_exceptions.HttpProcessingError) and status < 500:
            field, what = _malformed(exc)
            log.info(
                "malformed request refused remote=%s status=%s field=%s: %s",
                request.remote,
                status,
                field,
                what,
            )
            body = {
                "error": "BadRequest",
                "message": f"{field}: {what}",
                "field": field,
            }
        elif status == 504:
            body = {"error": "Timeout", "message": "took too long", "field": None}
        else:
            log.error(
                "request failed remote=%s path=%s",
                request.remote,
                request.path,
                exc_info=exc,
            )
            body = {
                "error": "InternalError",
                "message": "the API failed on this request; its log says why",
                "field": None,
            }
        response = web.json_response(body, status=status)
        response.force_close()
        return response


# What aiohttp's parser says is wrong, in its own fixed words: the C parser
# (llhttp) reports a reason like "Invalid header value char", then the raw
# line. Only words of that shape are kept; whatever else it says is the
# client's input, and left out.
_REASON = re.compile(r"[A-Za-z][A-Za-z -]{2,80}")


def _malformed(exc: http_exceptions.HttpProcessingError) -> tuple[str, str]:
    """(field, reason) of a request aiohttp could not parse, never quoting it.

    >>> _malformed(http_exceptions.BadHttpMessage(
    ...     "Invalid header value char:\\n\\n  b'X-A: <b>'\\n  ^"))
    ('headers', 'not valid HTTP (invalid header value char)')
    >>> _malformed(http_exceptions.LineTooLong("<script>" * 9000, MAX_HEADER_FIELD))
    ('headers', 'a header is longer than 8190 bytes')
    >>> _malformed(http_exceptions.LineTooLong("/warnings?" * 900, MAX_REQUEST_LINE))
    ('request line', 'the request line is longer than 8191 bytes')
    """
    if isinstance(exc, http_exceptions.LineTooLong):
        if str(exc.args[1]) == str(MAX_REQUEST_LINE):
            limit = MAX_REQUEST_LINE
            return "request line", f"the request line is longer than {limit} bytes"
        return "headers", f"a header is longer than {MAX_HEADER_FIELD} bytes"
    fixed: list[tuple[type[Exception], str, str]] = [
        (http_exceptions.BadHttpMethod, "method", "not a valid HTTP method"),
        (http_exceptions.InvalidURLError, "path", "not a valid request target"),
        (http_exceptions.BadStatusLine, "request line", "not an HTTP/1.x request line"),
        (http_exceptions.InvalidHeader, "headers", "a header line is malformed"),
        (
            http_exceptions.PayloadEncodingError,
            "body",
            "the body does not match its "
            "Content-Length, Transfer-Encoding or Content-Encoding",
        ),
    ]
    for kind, field, what in fixed:
        if isinstance(exc, kind):
            return field, what
    first = exc.message.split(":", 1)[0].strip()
    reason = first.lower() if _REASON.fullmatch(first) else ""
    field = next(
        (name for name, words in _FIELD_WORDS if any(word in reason for word in words)),
        "request",
    )
    return field, "not valid HTTP" + (f" ({reason})" if reason else "")


_FIELD_WORDS = (
    ("headers", ("header", "content-length", "transfer-encoding")),
    ("method", ("method",)),
    ("path", ("url", "path", "target")),
    ("body", ("chunk", "body")),
    ("request line", ("version", "status")),
)


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
            exc.status_code,
            exc.reason.replace(" ", ""),
            exc.text or exc.reason,
            # A body over client_max_size: name the part, as a 400 does.
            "body" if exc.status_code == 413 else None,
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
    message = err["msg"].removeprefix("Value error, ")
    return _Problem(422, "InvalidInput", f"{field}: {message}", field)


def _query(request: web.Request, model: type[_M]) -> _M:
    """The query parameters as ``model`` (which forbids unknown ones): an
    unknown, repeated or bad parameter is a 422 naming it."""
    # A parameter takes one value; a repeated one (level=I&level=IV) would
    # otherwise silently keep only its first and answer the wrong question.
    for name in request.query:
        if len(request.query.getall(name)) > 1:
            raise _Problem(
                422,
                "InvalidInput",
                f"{name}: given more than once; each parameter takes one value",
                name,
            )
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise _invalid(exc) from exc


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


# How long /health waits for the brokers' answer before calling them unreachable.
HEALTH_TIMEOUT_S = 2.0


async def _health(request: web.Request) -> web.Response:
    """Whether Kafka answers now and what the API can do: 503 while it does
    not, as no action or silence can then be taken; warnings and silences are
    still read, as last seen (``read``), and evidence from InfluxDB."""
    view = request.app[VIEW]
    loaded = view.ready.is_set()
    kafka = await request.app[SINK].reachable(HEALTH_TIMEOUT_S)
    status = ("ok" if loaded else "loading") if kafka else "unavailable"
    return _json(
        {
            "status": status,
            "kafka": "reachable" if kafka else "unreachable",
            "registry": "loaded" if request.app[REGISTRY].ready.is_set() else "loading",
            "read": loaded,
            "act": loaded and kafka,
            "warnings": len(view),
            "silences": len(request.app[SILENCE_VIEW]),
        },
        status=200 if kafka else 503,
    )


async def _list(request: web.Request) -> web.Response:
    _account(request, acting=False)
    query = _query(request, ListQuery)
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
    query = _query(request, ShowQuery)
    record = _warning(request)
    data = _dump(record)
    if query.evidence:
        # A feed warning's items have no evidence: no one device's readings.
        data["evidence"] = [
            await _series(request, record, item.evidence)
            for item in record.items
            if item.evidence is not None
        ]
    return _json(data)


async def _cap(request: web.Request) -> web.Response:
    """The latest version as a CAP 1.2 ``alert``: what a public warning
    system takes (its ``references`` name the earlier versions)."""
    _account(request, acting=False)
    _query(request, NoQuery)
    record = _warning(request)
    body = render_cap(record, sender=request.app[OPTIONS]["cap_sender"])
    return web.Response(body=body, content_type=CAP_MEDIA_TYPE, charset="utf-8")


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
            error = TransitionError(record.id, record.status, action)
            raise _Problem(409, "Conflict", str(error), "status")
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
        if isinstance(version, Refusal):
            # Lost a race the quick check could not see: another change got
            # to the lifecycle agent first.
            log.info(
                "command refused warning=%s command=%s action=%s by=%s status=%s",
                record.id,
                command.id,
                action.value,
                account.name,
                version.status.value if version.status else None,
            )
            raise _Problem(409, "Conflict", version.reason, "status")
        return _json({"command": command.id, "warning": _dump(version)})

    handle.__name__ = f"_{action.value}"
    return handle


async def _list_silences(request: web.Request) -> web.Response:
    _account(request, acting=False)
    _query(request, NoQuery)
    silences = request.app[SILENCE_VIEW].silences()
    return _json({"silences": [s.model_dump(mode="json") for s in silences]})


async def _silence(request: web.Request) -> web.Response:
    account = _account(request, acting=True)
    body = await _body(request, SilenceBody)
    _check_known(request, body.subject)
    now: datetime = request.app[OPTIONS]["clock"]()
    if body.until <= now:
        raise _Problem(422, "InvalidInput", "until: must be in the future", "until")
    if body.starts is not None and body.starts >= body.until:
        raise _Problem(422, "InvalidInput", "starts: must be before until", "starts")
    refused = span_refusal(
        body.subject.kind,
        starts=body.starts,
        until=body.until,
        now=now,
        limits=request.app[OPTIONS]["silence_limits"],
        supervisor=account.may_silence_long,
    )
    if refused is not None:
        field, why = refused
        raise _Problem(422, "InvalidInput", f"{field}: {why}", field)
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


def _check_known(request: web.Request, subject: SilenceSubject) -> None:
    """Refuse a silence that names what the worker never sees: it could never
    hold a warning back, and the officer would believe it does."""
    if subject.kind == SilenceKind.RULE:
        rules = request.app[RULES]
        if subject.id not in rules:
            raise _Problem(
                422,
                "InvalidInput",
                f"subject.id: no rule {subject.id!r} among the {len(rules)} rules "
                "the worker evaluates",
                "subject.id",
            )
        return
    registry = request.app[REGISTRY]
    if not registry.ready.is_set():
        raise _Problem(
            503,
            "Unavailable",
            "the registry is still loading: a device or enterprise silence cannot "
            "be checked yet, try again (rule silences are taken)",
        )
    enterprise_id, _, device = subject.id.partition("/")
    enterprise = registry.get(enterprise_id)
    if enterprise is None:
        raise _Problem(
            422,
            "InvalidInput",
            f"subject.id: enterprise {enterprise_id!r} is not in the registry",
            "subject.id",
        )
    if device and not _device_known(request, enterprise, device):
        raise _Problem(
            422,
            "InvalidInput",
            f"subject.id: enterprise {enterprise_id} has no device {device!r} in "
            "the registry, nor a warning of it",
            "subject.id",
        )


def _device_known(request: web.Request, enterprise: Enterprise, device: str) -> bool:
    """Listed under its enterprise in the registry, or warning already: the
    worker takes readings of a registered enterprise's devices that its entry
    does not list, and a device that warns must be silenceable."""
    if any(d.id == device for d in enterprise.devices):
        return True
    return any(
        r.device_id == device and r.enterprise_id == enterprise.id
        for r in request.app[VIEW].records()
    )


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
