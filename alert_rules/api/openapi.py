"""The OpenAPI 3.1 document of the officer API, served at ``/openapi.json``.

Paths are written here by hand; the schemas of the bodies and the warning
record are generated from the pydantic models, so they cannot drift from what
the API accepts and returns. A test checks that every route of
:func:`alert_rules.api.build_app` is here and the other way round, and validates
the document.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from alert_rules.api.models import (
    LIST_LIMIT,
    ActionBody,
    DisposeBody,
    Silence,
    SilenceBody,
)
from alert_rules.cap import CAP_MEDIA_TYPE
from alert_rules.lifecycle import Action
from alert_rules.rule import Level, ScopeKind
from alert_rules.warning import WarningRecord, WarningStatus

_REF = "#/components/schemas/{model}"


def _schemas(*models: type[BaseModel]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=_REF)
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref("Error")}},
    }


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


_ERRORS = {
    "400": _error(
        "Not valid HTTP (a malformed header, method, path or body framing); "
        "`field` names the part, nothing of the request is quoted back."
    ),
    "401": _error("Missing or unknown bearer token."),
    "422": _error("Invalid input; `field` names it."),
    "500": _error("A failure of the API itself; its log says why."),
    "503": _error("The warning store is still loading."),
}
_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The warning id (`rw-…`).",
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _enum(values: Iterable[StrEnum]) -> dict[str, Any]:
    return {"type": "string", "enum": [v.value for v in values]}


def _action_path(action: Action, body: str, summary: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": action.value,
            "summary": summary,
            "tags": ["actions"],
            "parameters": [_ID],
            "requestBody": {
                "required": action == Action.DISPOSE,
                "content": {"application/json": {"schema": _ref(body)}},
            },
            "responses": {
                "200": _ok("Applied; the new version.", _ref("ActionResult")),
                "202": _ok("Accepted, not applied yet.", _ref("Pending")),
                **_ERRORS,
                "403": _error("The token's role may only read."),
                "404": _error("No such warning."),
                "409": _error(
                    "Not allowed from the warning's current status, or refused "
                    "by the worker because another change got there first."
                ),
            },
        }
    }


_WARNING_VIEW = {
    "allOf": [
        _ref("WarningRecord"),
        {
            "type": "object",
            "properties": {
                "allowed_actions": {"type": "array", "items": _enum(Action)},
            },
        },
    ]
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "riskwatch officer API",
        "version": "1",
        "description": (
            "Warnings for the grid officers: list, inspect with their audit "
            "trail and evidence, acknowledge, dispose, close; silences. "
            "Send `Authorization: Bearer <token>`; role `viewer` may read, "
            "`officer` may also act, `supervisor` may also record longer "
            "silences."
        ),
    },
    "security": [{"bearer": []}],
    "paths": {
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "security": [],
                "responses": {"200": _ok("The OpenAPI document.", {"type": "object"})},
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Whether Kafka answers and the stores are loaded.",
                "description": (
                    "Asks the brokers (at most 2 s). 503 while they do not "
                    "answer: no action or silence can be taken then, but "
                    "warnings and silences are still read as last seen "
                    "(`read`), with their evidence from InfluxDB."
                ),
                "security": [],
                "responses": {
                    "200": _ok("Kafka reachable; status and counts.", _ref("Health")),
                    "503": _ok("Kafka unreachable; what still works.", _ref("Health")),
                },
            }
        },
        "/warnings": {
            "get": {
                "operationId": "listWarnings",
                "summary": "Warnings, newest version first, filtered.",
                "tags": ["warnings"],
                "parameters": [
                    _query("level", _enum(Level), "Warning level."),
                    _query("status", _enum(WarningStatus), "Current status."),
                    _query("scope", _enum(ScopeKind), "Scope kind."),
                    _query("enterprise", {"type": "string"}, "Enterprise id."),
                    _query("grid", {"type": "string"}, "Grid id."),
                    _query(
                        "since",
                        {"type": "string", "format": "date-time"},
                        "start_time at or after; ISO 8601 with a timezone, no epoch.",
                    ),
                    _query(
                        "until",
                        {"type": "string", "format": "date-time"},
                        "start_time before; ISO 8601 with a timezone, no epoch.",
                    ),
                    _query(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": LIST_LIMIT,
                            "default": 100,
                        },
                        "At most this many.",
                    ),
                ],
                "responses": {
                    "200": _ok("Matching warnings.", _ref("WarningList")),
                    **_ERRORS,
                },
            }
        },
        "/warnings/{id}": {
            "get": {
                "operationId": "getWarning",
                "summary": "One warning with its audit trail and evidence series.",
                "tags": ["warnings"],
                "parameters": [
                    _ID,
                    _query(
                        "evidence",
                        {"type": "boolean", "default": True},
                        "Read the evidence series from InfluxDB.",
                    ),
                ],
                "responses": {
                    "200": _ok("The latest version.", _ref("WarningDetail")),
                    **_ERRORS,
                    "404": _error("No such warning."),
                },
            }
        },
        "/warnings/{id}/cap": {
            "get": {
                "operationId": "getWarningCap",
                "summary": (
                    "The latest version as an OASIS CAP 1.2 alert (references "
                    "name the earlier versions)."
                ),
                "tags": ["warnings"],
                "parameters": [_ID],
                "responses": {
                    "200": {
                        "description": "The CAP 1.2 document.",
                        "content": {CAP_MEDIA_TYPE: {"schema": {"type": "string"}}},
                    },
                    **_ERRORS,
                    "404": _error("No such warning."),
                },
            }
        },
        "/warnings/{id}/acknowledge": _action_path(
            Action.ACKNOWLEDGE, "ActionBody", "Acknowledge an open or resolved warning."
        ),
        "/warnings/{id}/dispose": _action_path(
            Action.DISPOSE, "DisposeBody", "Record what was done (note required)."
        ),
        "/warnings/{id}/close": _action_path(
            Action.CLOSE, "ActionBody", "Close a disposed or resolved warning."
        ),
        "/silences": {
            "get": {
                "operationId": "listSilences",
                "summary": "Silences recorded.",
                "tags": ["silences"],
                "responses": {
                    "200": _ok("Every silence.", _ref("SilenceList")),
                    **_ERRORS,
                },
            },
            "post": {
                "operationId": "silence",
                "summary": "Record a silence or maintenance window; the worker "
                "holds the warnings it covers back from the platform.",
                "description": (
                    "The subject must be known to the worker: an enterprise "
                    "in the registry, a device listed under its enterprise "
                    "there (or with a warning in the store), or a rule it "
                    "evaluates (422 naming `subject.id` otherwise). 503 while "
                    "the registry is still loading, for a device or enterprise. "
                    "It may last, from its start, at most `api.silences` "
                    "allows its kind (device 7 days, enterprise 3 days, rule "
                    "1 day; a supervisor 4 times as long), and start at most "
                    "30 days ahead: else 422 naming `until` (or `starts`) "
                    "and the limit."
                ),
                "tags": ["silences"],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("SilenceBody")}},
                },
                "responses": {
                    "201": _ok("Recorded.", _ref("SilenceCreated")),
                    **_ERRORS,
                    "403": _error("The token's role may only read."),
                },
            },
        },
        "/silences/{id}": {
            "delete": {
                "operationId": "liftSilence",
                "summary": "Lift a silence early: it ends now.",
                "tags": ["silences"],
                "parameters": [{**_ID, "description": "The silence id (`sil-…`)."}],
                "responses": {
                    "200": _ok("Lifted.", _ref("SilenceCreated")),
                    **_ERRORS,
                    "403": _error("The token's role may only read."),
                    "404": _error("No such silence."),
                    "409": _error("The silence already ended."),
                },
            }
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            **_schemas(WarningRecord, ActionBody, DisposeBody, SilenceBody, Silence),
            "Error": {
                "type": "object",
                "required": ["error", "message"],
                "properties": {
                    "error": {"type": "string", "examples": ["Conflict"]},
                    "message": {"type": "string"},
                    "field": {"type": ["string", "null"]},
                },
            },
            "Health": {
                "type": "object",
                "required": ["status", "kafka", "registry", "read", "act"],
                "properties": {
                    "status": {
                        "type": "string",
                        "enum": ["ok", "loading", "unavailable"],
                        "description": "unavailable: Kafka does not answer.",
                    },
                    "kafka": {"type": "string", "enum": ["reachable", "unreachable"]},
                    "registry": {"type": "string", "enum": ["loaded", "loading"]},
                    "read": {
                        "type": "boolean",
                        "description": "Warnings and silences can be read.",
                    },
                    "act": {
                        "type": "boolean",
                        "description": "Actions and silences can be taken.",
                    },
                    "warnings": {"type": "integer"},
                    "silences": {"type": "integer"},
                },
            },
            "WarningView": _WARNING_VIEW,
            "WarningList": {
                "type": "object",
                "properties": {
                    "count": {"type": "integer"},
                    "warnings": {"type": "array", "items": _ref("WarningView")},
                },
            },
            "Series": {
                "type": "object",
                "properties": {
                    "device": {"type": "string"},
                    "metric": {"type": "string"},
                    "from": {"type": "string", "format": "date-time"},
                    "to": {"type": "string", "format": "date-time"},
                    "points": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "time": {"type": "string", "format": "date-time"},
                                "value": {"type": ["number", "null"]},
                                "score": {"type": ["number", "null"]},
                            },
                        },
                    },
                    "error": {"type": ["string", "null"]},
                },
            },
            "WarningDetail": {
                "allOf": [
                    _ref("WarningView"),
                    {
                        "type": "object",
                        "properties": {
                            "evidence": {"type": "array", "items": _ref("Series")}
                        },
                    },
                ]
            },
            "ActionResult": {
                "type": "object",
                "properties": {
                    "command": {"type": "string"},
                    "warning": _ref("WarningView"),
                },
            },
            "Pending": {
                "type": "object",
                "properties": {
                    "command": {"type": "string"},
                    "state": {"type": "string", "enum": ["pending"]},
                },
            },
            "SilenceList": {
                "type": "object",
                "properties": {"silences": {"type": "array", "items": _ref("Silence")}},
            },
            "SilenceCreated": {
                "type": "object",
                "properties": {"silence": _ref("Silence")},
            },
        },
    },
}
