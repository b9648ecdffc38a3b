"""The officer API with aiohttp's test client: roles, transitions, errors."""

import asyncio
import json
import logging
from datetime import datetime

import pytest
from openapi_spec_validator import validate

from alert_rules import Rule, RuleEngine
from alert_rules.api import OPENAPI
from alert_rules.api.app import _command_id
from alert_rules.cap import CAP_NAMESPACE
from alert_rules.grouping import GroupTable
from alert_rules.lifecycle import Action
from riskwatch.contracts import Observation
from riskwatch.registry import Enterprise
from stream_jobs.outage import Outage, feed_warning
from tests.capschema import validated
from tests.unit.alert_rules.api.conftest import (
    NOW,
    OFFICER,
    VIEWER,
    Api,
    call,
    raw_exchange,
)
from tests.unit.conftest import enterprise_entry, make_warning_record

OPENED = make_warning_record()
OTHER = make_warning_record(
    enterprise="HC009", device="PT-9", level="I", rule="pressure-high"
)
PATH = f"/warnings/{OPENED.id}"


def test_an_officer_takes_a_warning_through_its_whole_lifecycle(caplog):
    api = Api()
    with caplog.at_level(logging.INFO, logger="alert_rules.api.app"):
        answers = call(
            api,
            [
                ("POST", f"{PATH}/acknowledge", OFFICER, {"comment": "on my way"}),
                ("POST", f"{PATH}/dispose", OFFICER, {"note": "valve closed"}),
                ("POST", f"{PATH}/close", OFFICER, None),
                ("GET", PATH, VIEWER, None),
            ],
            seed=[OPENED],
        )
    assert [status for status, _ in answers] == [200, 200, 200, 200]
    assert [a["warning"]["status"] for _, a in answers[:3]] == [
        "acknowledged",
        "disposed",
        "closed",
    ]
    shown = answers[3][1]
    trail = [(e["from_status"], e["status"], e["by"]) for e in shown["history"]]
    assert trail == [
        (None, "open", "rules"),
        ("open", "acknowledged", "officer-li"),
        ("acknowledged", "disposed", "officer-li"),
        ("disposed", "closed", "officer-li"),
    ]
    assert shown["history"][2]["comment"] == "valve closed"
    assert shown["allowed_actions"] == []
    assert shown["deadline"] == "2026-12-03T05:02:00.250000Z"  # level II: 4 h
    [series] = shown["evidence"]
    assert (series["device"], series["points"][0]["value"]) == ("GD-101", 31.0)
    assert f"command sent warning={OPENED.id}" in caplog.text
    assert OFFICER not in caplog.text


@pytest.mark.parametrize(
    ("method", "path", "token", "body", "status", "error"),
    [
        ("GET", "/warnings", None, None, 401, "Unauthorized"),
        ("GET", "/warnings", "wrong", None, 401, "Unauthorized"),
        ("POST", f"{PATH}/acknowledge", VIEWER, {}, 403, "Forbidden"),
        ("POST", "/silences", VIEWER, {}, 403, "Forbidden"),
        ("GET", "/warnings/rw-nope", VIEWER, None, 404, "NotFound"),
        ("POST", "/warnings/rw-nope/acknowledge", OFFICER, {}, 404, "NotFound"),
        ("POST", f"{PATH}/close", OFFICER, {}, 409, "Conflict"),
        ("POST", f"{PATH}/dispose", OFFICER, {"note": "x"}, 409, "Conflict"),
        ("POST", f"{PATH}/dispose", OFFICER, {}, 422, "InvalidInput"),
        ("POST", f"{PATH}/acknowledge", OFFICER, {"coment": "x"}, 422, "InvalidInput"),
        ("GET", "/warnings?level=V", VIEWER, None, 422, "InvalidInput"),
        ("GET", "/warnings?since=2026-01-01T00:00", VIEWER, None, 422, "InvalidInput"),
    ],
)
def test_errors_name_the_problem(method, path, token, body, status, error):
    [(got, answer)] = call(Api(), [(method, path, token, body)], seed=[OPENED])
    assert (got, answer["error"]) == (status, error)
    assert answer["message"]


def test_422_names_the_field_and_409_the_status():
    answers = call(
        Api(),
        [
            ("POST", f"{PATH}/dispose", OFFICER, {"note": "   "}),
            ("GET", "/warnings?limit=0", VIEWER, None),
            ("POST", f"{PATH}/close", OFFICER, {}),
        ],
        seed=[OPENED],
    )
    assert [(a["field"], s) for s, a in answers] == [
        ("note", 422),
        ("limit", 422),
        ("status", 409),
    ]
    assert (
        "is open: close is allowed only when it is disposed, resolved"
        in (answers[2][1]["message"])
    )


def test_a_command_the_worker_has_not_applied_yet_is_answered_202():
    api = Api(apply=False, apply_timeout_s=0.05)
    [(status, answer)] = call(
        api,
        [("POST", f"{PATH}/acknowledge", OFFICER, {"command_id": "retry-1"})],
        seed=[OPENED],
    )
    command = _command_id("officer-li", Action.ACKNOWLEDGE, "retry-1")
    assert (status, answer) == (202, {"command": command, "state": "pending"})
    [(_, key, _)] = api.sink.sent
    assert key == OPENED.id.encode()


def test_list_filters_combine_and_newest_comes_first():
    seed = [OPENED, OTHER]
    answers = call(
        Api(),
        [
            ("GET", "/warnings", VIEWER, None),
            ("GET", "/warnings?level=I", VIEWER, None),
            ("GET", "/warnings?enterprise=HC001&status=open", VIEWER, None),
            ("GET", "/warnings?grid=nanhu-g2&scope=device&limit=1", VIEWER, None),
            ("GET", "/warnings?status=closed", VIEWER, None),
            (
                "GET",
                f"/warnings?since={NOW.isoformat()}".replace("+", "%2B"),
                VIEWER,
                None,
            ),
        ],
        seed=seed,
    )
    ids = [[w["device_id"] for w in a["warnings"]] for _, a in answers]
    assert ids[1:] == [["PT-9"], ["GD-101"], ["GD-101"], [], []]
    assert sorted(ids[0]) == ["GD-101", "PT-9"]
    assert answers[3][1]["count"] == 2  # the limit cuts the list, not the count


def test_evidence_failure_still_shows_the_warning():
    api = Api()
    api.evidence.fail = ConnectionError("influxdb down")
    [(status, shown)] = call(api, [("GET", PATH, VIEWER, None)], seed=[OPENED])
    assert status == 200
    assert shown["evidence"][0]["error"].startswith("evidence not available")
    [(_, bare)] = call(api, [("GET", f"{PATH}?evidence=false", VIEWER, None)], [OPENED])
    assert "evidence" not in bare


def test_silences_are_recorded_and_listed():
    until = "2026-12-04T00:00:00Z"
    answers = call(
        Api(),
        [
            (
                "POST",
                "/silences",
                OFFICER,
                {
                    "subject": {"kind": "device", "id": "HC001/GD-101"},
                    "reason": "calibration",
                    "until": until,
                },
            ),
            (
                "POST",
                "/silences",
                OFFICER,
                {
                    "subject": {"kind": "rule", "id": "combustible-gas-orange"},
                    "reason": "r",
                    "until": "2020-01-01T00:00:00Z",
                },
            ),
            ("GET", "/silences", VIEWER, None),
        ],
    )
    assert [s for s, _ in answers] == [201, 422, 200]
    assert answers[1][1]["field"] == "until"
    [silence] = answers[2][1]["silences"]
    assert (silence["by"], silence["reason"]) == ("officer-li", "calibration")


def test_a_silence_is_lifted_early_once_and_a_window_may_start_later():
    body = {
        "subject": {"kind": "enterprise", "id": "HC001"},
        "reason": "shutdown for maintenance",
        "until": "2026-12-04T00:00:00Z",
    }
    api = Api()
    [(status, created)] = call(api, [("POST", "/silences", OFFICER, body)])
    assert status == 201
    ident = created["silence"]["id"]
    answers = call(
        api,
        [
            ("DELETE", f"/silences/{ident}", VIEWER, None),
            ("DELETE", f"/silences/{ident}", OFFICER, None),
            ("DELETE", f"/silences/{ident}", OFFICER, None),
            ("DELETE", "/silences/sil-nope", OFFICER, None),
            ("POST", "/silences", OFFICER, {**body, "starts": body["until"]}),
            (
                "POST",
                "/silences",
                OFFICER,
                {**body, "starts": "2026-12-03T12:00:00Z"},
            ),
        ],
    )
    assert [s for s, _ in answers] == [403, 200, 409, 404, 422, 201]
    lifted = answers[1][1]["silence"]
    assert lifted["lifted_by"] == "officer-li"
    assert datetime.fromisoformat(lifted["until"]) == NOW
    assert lifted["by"] == created["silence"]["by"]
    assert answers[2][1]["field"] == "until"
    assert answers[4][1]["field"] == "starts"
    assert answers[5][1]["silence"]["starts"].startswith("2026-12-03T12:00:00")
    assert api.silences.get(ident).until == NOW


def test_store_not_loaded_answers_503():
    api = Api()
    api.view.ready.clear()
    [(status, answer)] = call(api, [("GET", "/warnings", VIEWER, None)])
    assert (status, answer["error"]) == (503, "Unavailable")


def test_openapi_document_is_valid_and_lists_every_route():
    [(status, served)] = call(Api(), [("GET", "/openapi.json", None, None)])
    assert status == 200
    assert served == OPENAPI
    validate(OPENAPI)
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in Api().app().router.routes()
        if route.method != "HEAD"
    }
    documented = {
        (method, path)
        for path, operations in OPENAPI["paths"].items()
        for method in operations
    }
    assert routes == documented
    posted = {
        p.rsplit("/", 1)[1] for p, ops in OPENAPI["paths"].items() if "post" in ops
    }
    assert posted >= {
        a.value for a in (Action.ACKNOWLEDGE, Action.DISPOSE, Action.CLOSE)
    }


def test_a_feed_warning_is_listed_shown_without_evidence_and_acknowledged():
    outage = Outage(id="rw-feed1", start_ns=0, devices=8, heard=8, found_ns=0)
    feed = feed_warning(
        outage, feed="w1", authority="Office", silent_after_s=900, now=NOW
    )
    path = f"/warnings/{feed.id}"
    answers = call(
        Api(),
        [
            ("GET", "/warnings?scope=feed", VIEWER, None),
            ("GET", path, VIEWER, None),
            ("POST", f"{path}/acknowledge", OFFICER, {"comment": "broker restarted"}),
        ],
        seed=[OPENED, feed],
    )
    assert [status for status, _ in answers] == [200, 200, 200]
    assert [w["id"] for w in answers[0][1]["warnings"]] == [feed.id]
    shown = answers[1][1]
    assert (shown["scope"]["kind"], shown["device_id"], shown["metric"]) == (
        "feed",
        "*",
        None,
    )
    assert shown["evidence"] == []
    assert answers[2][1]["warning"]["status"] == "acknowledged"


def test_a_grid_warning_shows_each_member_device_s_evidence():
    rule = Rule.model_validate(
        {
            "id": "gas-grid",
            "title": "Gas at several enterprises of one grid",
            "level": "I",
            "scope": "grid",
            "group": {"min_members": 2},
            "select": {"metrics": ["combustible_gas_lel"]},
            "when": {"above": 25},
            "action": "Alert the emergency services.",
            "expected": "Below 25 %LEL.",
        }
    )
    engine = RuleEngine([rule], "Office")
    registry = [
        Enterprise.model_validate(enterprise_entry(id=e, grid="g1"))
        for e in ("E1", "E2")
    ]
    table = GroupTable([rule], registry, "Office")
    records = []
    for minute, enterprise in enumerate(["E1", "E2"]):
        observation = Observation(
            enterprise=enterprise,
            device="GD-1",
            metric="combustible_gas_lel",
            ts_ns=int(NOW.timestamp()) * 10**9 + minute * 60 * 10**9,
            value=30.0,
            unit="%LEL",
            score=0.0,
        )
        records += table.feed(engine.evaluate(observation, registry[minute], {})[1])
    [grid] = records
    api = Api()
    answers = call(
        api,
        [
            ("GET", "/warnings?scope=grid", VIEWER, None),
            ("GET", f"/warnings/{grid.id}", VIEWER, None),
        ],
        seed=[OPENED, grid],
    )
    assert [w["id"] for w in answers[0][1]["warnings"]] == [grid.id]
    shown = answers[1][1]
    assert (shown["scope"]["kind"], shown["enterprise_id"]) == ("grid", "*")
    assert [m["id"] for m in shown["members"]] == ["E1", "E2"]
    # The evidence of each item is read from its own enterprise's series.
    assert api.evidence.asked == [
        ("E1", "GD-1", "combustible_gas_lel"),
        ("E2", "GD-1", "combustible_gas_lel"),
    ]
    assert [e["enterprise"] for e in shown["evidence"]] == ["E1", "E2"]


# What a break-in attempt found ------------------------------------------------


def test_a_note_of_control_characters_only_is_refused_naming_the_field():
    api = Api()
    answers = call(
        api,
        [
            ("POST", f"{PATH}/acknowledge", OFFICER, {}),
            ("POST", f"{PATH}/dispose", OFFICER, {"note": "\u001c\u001f"}),
        ],
        seed=[OPENED],
    )
    status, body = answers[1]
    assert status == 422
    assert body["field"] == "note"
    assert "blank or control characters" in body["message"]


def test_a_header_that_is_not_text_is_no_token():
    # aiohttp decodes header bytes that are not UTF-8 as surrogates; they
    # once raised UnicodeEncodeError (a 500) instead of being no token.
    assert Api().tokens.account("Bearer \udcff\udcfe") is None


def test_one_officer_id_reused_for_another_action_is_another_command():
    api = Api()
    answers = call(
        api,
        [
            ("POST", f"{PATH}/acknowledge", OFFICER, {"command_id": "same"}),
            (
                "POST",
                f"{PATH}/dispose",
                OFFICER,
                {"note": "valve closed", "command_id": "same"},
            ),
        ],
        seed=[OPENED],
    )
    assert [status for status, _ in answers] == [200, 200]
    assert answers[1][1]["warning"]["status"] == "disposed"


def test_an_officer_cannot_take_the_engines_command_ids():
    # The engine's next version of this warning will carry ".v2": an officer
    # sending that id must not make the engine's resolution "already applied".
    api = Api()
    engine_id = f"{OPENED.id}.v2"
    [(status, answer)] = call(
        api,
        [("POST", f"{PATH}/acknowledge", OFFICER, {"command_id": engine_id})],
        seed=[OPENED],
    )
    assert status == 200
    assert answer["command"] != engine_id
    assert answer["command"].startswith("api-")


def test_a_retry_of_an_applied_command_gets_the_same_answer_not_a_conflict():
    api = Api()
    request = ("POST", f"{PATH}/acknowledge", OFFICER, {"command_id": "once"})
    first, again = call(api, [request, request], seed=[OPENED])
    assert first[0] == again[0] == 200
    assert first[1]["command"] == again[1]["command"]
    history = again[1]["warning"]["history"]
    assert [h["status"] for h in history] == ["open", "acknowledged"]


def test_kafka_down_is_a_quick_503_and_changes_nothing(monkeypatch):
    from alert_rules.api import app as app_module  # noqa: PLC0415

    monkeypatch.setattr(app_module, "SEND_TIMEOUT_S", 0.05)
    api = Api()

    async def never(topic, key, value):
        await asyncio.sleep(10)

    api.sink.send = never
    [(status, body)] = call(
        api, [("POST", f"{PATH}/acknowledge", OFFICER, {})], seed=[OPENED]
    )
    assert status == 503
    assert "Kafka cannot be reached" in body["message"]


def test_aiohttps_own_errors_come_in_the_json_error_body():
    api = Api()
    answers = call(
        api,
        [
            ("GET", "/no-such-path", VIEWER, None),
            ("PUT", PATH, OFFICER, {}),
        ],
        seed=[OPENED],
    )
    assert [status for status, _ in answers] == [404, 405]
    assert answers[0][1]["error"] == "NotFound"
    assert answers[1][1]["error"] == "MethodNotAllowed"


def test_a_reversed_time_range_is_refused_naming_until():
    [(status, body)] = call(
        Api(),
        [
            (
                "GET",
                "/warnings?since=2026-12-03T00:00:00Z&until=2026-12-01T00:00:00Z",
                VIEWER,
                None,
            )
        ],
        seed=[OPENED],
    )
    assert status == 422
    assert body["field"] == "until"
    assert "reversed" in body["message"]


def test_a_silence_for_a_device_without_its_enterprise_is_refused():
    [(status, body)] = call(
        Api(),
        [
            (
                "POST",
                "/silences",
                OFFICER,
                {
                    "subject": {"kind": "device", "id": "GD-101"},
                    "reason": "calibration",
                    "until": "2026-12-04T00:00:00Z",
                },
            )
        ],
    )
    assert status == 422
    assert body["field"] == "subject.id"
    assert body["message"].startswith("subject.id: a device silence names ")
    assert "<enterprise>/<device>" in body["message"]


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        ({"kind": "enterprise", "id": "HC999"}, "enterprise 'HC999' is not in"),
        ({"kind": "device", "id": "HC999/GD-101"}, "enterprise 'HC999' is not in"),
        ({"kind": "device", "id": "HC001/GD-999"}, "HC001 has no device 'GD-999'"),
        ({"kind": "device", "id": "HC001/PT-9"}, "HC001 has no device 'PT-9'"),
        ({"kind": "rule", "id": "gas-typo"}, "no rule 'gas-typo' among the"),
    ],
)
def test_a_silence_for_what_the_registry_or_the_rules_do_not_know_is_refused(
    subject, message
):
    api = Api()
    body = {"subject": subject, "reason": "calibration", "until": "2026-12-04T00:00Z"}
    # OTHER warns from HC009/PT-9: a device of another enterprise.
    [(status, answer)] = call(
        api, [("POST", "/silences", OFFICER, body)], seed=[OPENED, OTHER]
    )
    assert (status, answer["error"], answer["field"]) == (
        422,
        "InvalidInput",
        "subject.id",
    )
    assert message in answer["message"]
    assert api.sink.sent == []


@pytest.mark.parametrize(
    "subject",
    [
        {"kind": "enterprise", "id": "HC002"},
        {"kind": "device", "id": "HC001/GD-102"},
        {"kind": "rule", "id": "device-silent"},
    ],
)
def test_a_silence_for_a_known_subject_is_recorded(subject):
    body = {"subject": subject, "reason": "calibration", "until": "2026-12-04T00:00Z"}
    [(status, answer)] = call(Api(), [("POST", "/silences", OFFICER, body)])
    assert status == 201
    assert answer["silence"]["subject"] == subject


def test_a_device_the_registry_does_not_list_may_be_silenced_once_it_warns():
    # The worker takes readings of devices a registered enterprise's entry
    # does not list; a device that warns must be silenceable.
    unlisted = make_warning_record(enterprise="HC001", device="GD-777")
    body = {
        "subject": {"kind": "device", "id": "HC001/GD-777"},
        "reason": "calibration",
        "until": "2026-12-04T00:00:00Z",
    }
    [(before, _)] = call(Api(), [("POST", "/silences", OFFICER, body)])
    [(after, _)] = call(Api(), [("POST", "/silences", OFFICER, body)], [unlisted])
    assert (before, after) == (422, 201)


def test_while_the_registry_loads_only_rule_silences_are_taken():
    api = Api()
    api.registry.ready.clear()
    body = {"reason": "calibration", "until": "2026-12-04T00:00:00Z"}
    answers = call(
        api,
        [
            ("POST", "/silences", OFFICER, {**body, "subject": subject})
            for subject in (
                {"kind": "device", "id": "HC001/GD-101"},
                {"kind": "rule", "id": "combustible-gas-orange"},
            )
        ],
    )
    assert [status for status, _ in answers] == [503, 201]
    assert answers[0][1]["error"] == "Unavailable"
    assert "registry is still loading" in answers[0][1]["message"]


_SCRIPT = b"<script>alert(1)</script>"


@pytest.mark.parametrize(
    ("request_bytes", "field", "reason"),
    [
        (
            b"GET /health HTTP/1.1\r\nHost: a\r\nX-A: " + _SCRIPT + b"\x01\r\n\r\n",
            "headers",
            "invalid header value char",
        ),
        (
            b"GET /health HTTP/1.1\r\nHost: a\r\n" + _SCRIPT + b": 1\r\n\r\n",
            "headers",
            "invalid header token",
        ),
        (
            b"GET /health HTTP/1.1\r\nX-A: " + _SCRIPT * 400 + b"\r\n\r\n",
            "headers",
            "a header is longer than 8190 bytes",
        ),
        (
            b"GET /warnings?x=" + _SCRIPT * 400 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
            "request line",
            "the request line is longer than 8191 bytes",
        ),
        (b"G" + _SCRIPT + b"T /health HTTP/1.1\r\n\r\n", "method", "method"),
        (
            b"POST /silences HTTP/1.1\r\nHost: a\r\nContent-Length: 1"
            + _SCRIPT
            + b"\r\n\r\n",
            "headers",
            "content-length",
        ),
        (
            b"POST /silences HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
            b"\r\n" + _SCRIPT + b"\r\n",
            "body",
            "chunk",
        ),
    ],
)
def test_a_malformed_request_gets_the_json_error_body_without_its_bytes(
    request_bytes, field, reason, caplog
):
    with caplog.at_level(logging.INFO, logger="alert_rules.api.app"):
        status, content_type, body = raw_exchange(Api(), request_bytes)
    assert (status, content_type) == (400, "application/json; charset=utf-8")
    answer = json.loads(body)
    assert (answer["error"], answer["field"]) == ("BadRequest", field)
    assert answer["message"].startswith(f"{field}: ")
    assert reason in answer["message"].lower()
    assert b"script" not in body
    assert "script" not in caplog.text
    assert f"malformed request refused remote=127.0.0.1 status=400 field={field}" in (
        caplog.text
    )


def test_an_unhandled_error_is_a_json_500_and_logged_with_its_traceback(caplog):
    api = Api()

    async def broken(topic, key, value):
        raise RuntimeError("a bug in the sink")

    api.sink.send = broken
    body = json.dumps({"comment": "x"}).encode()
    request_bytes = (
        f"POST /warnings/{OPENED.id}/acknowledge HTTP/1.1\r\nHost: a\r\n"
        f"Authorization: Bearer {OFFICER}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    api.sink.seed(OPENED)
    with caplog.at_level(logging.ERROR, logger="alert_rules.api.app"):
        status, _, answer = raw_exchange(api, request_bytes)
    assert status == 500
    assert json.loads(answer)["error"] == "InternalError"
    assert b"a bug in the sink" not in answer
    assert "a bug in the sink" in caplog.text


@pytest.mark.parametrize(
    "query",
    [
        "since=1764720000",
        "since=1764720000000",
        "until=1764720000.5",
        "since=2026-12-03T00:00:00Z&until=1764720000",
    ],
)
def test_epoch_numbers_in_the_query_are_refused_naming_the_parameter(query):
    [(status, body)] = call(Api(), [("GET", f"/warnings?{query}", VIEWER, None)])
    field = query.rsplit("&", 1)[-1].split("=")[0]
    assert (status, body["field"]) == (422, field)
    assert body["message"].startswith(f"{field}: must be an ISO 8601 time with a")
    assert "epoch numbers are refused" in body["message"]


@pytest.mark.parametrize(
    ("times", "field"),
    [
        ({"until": 1796256000}, "until"),
        ({"until": 1796256000.0}, "until"),
        ({"until": "1796256000"}, "until"),
        ({"until": "2026-12-04T00:00:00Z", "starts": 1764720000}, "starts"),
        ({"until": "2026-12-04T00:00:00"}, "until"),
    ],
)
def test_a_silence_with_a_time_not_in_iso_8601_with_timezone_is_refused(times, field):
    api = Api()
    body = {
        "subject": {"kind": "enterprise", "id": "HC001"},
        "reason": "maintenance",
        **times,
    }
    [(status, answer)] = call(api, [("POST", "/silences", OFFICER, body)])
    assert (status, answer["field"]) == (422, field)
    assert answer["message"].startswith(f"{field}: ")
    assert "timezone" in answer["message"]
    assert api.sink.sent == []


def test_iso_8601_times_with_an_offset_are_taken():
    answers = call(
        Api(),
        [
            ("GET", "/warnings?since=2026-12-03T08:00:00%2B08:00", VIEWER, None),
            (
                "POST",
                "/silences",
                OFFICER,
                {
                    "subject": {"kind": "enterprise", "id": "HC001"},
                    "reason": "maintenance",
                    "starts": "2026-12-03T12:00:00+08:00",
                    "until": "2026-12-04T00:00:00Z",
                },
            ),
        ],
        seed=[OPENED],
    )
    assert [status for status, _ in answers] == [200, 201]
    assert answers[0][1]["count"] == 1
    starts = datetime.fromisoformat(answers[1][1]["silence"]["starts"])
    assert starts == datetime.fromisoformat("2026-12-03T04:00:00+00:00")


def test_health_reports_kafka_and_answers_503_while_it_cannot_be_reached():
    api = Api()
    [(up_status, up)] = call(api, [("GET", "/health", None, None)], seed=[OPENED])
    api.sink.kafka_up = False
    answers = call(
        api,
        [
            ("GET", "/health", None, None),
            ("GET", "/warnings", VIEWER, None),
            ("GET", PATH, VIEWER, None),
        ],
    )
    assert (up_status, up["status"], up["kafka"]) == (200, "ok", "reachable")
    assert (up["read"], up["act"], up["warnings"]) == (True, True, 1)
    (down_status, down), (listed, _), (shown, _) = answers
    assert (down_status, down["status"], down["kafka"]) == (
        503,
        "unavailable",
        "unreachable",
    )
    assert (down["read"], down["act"], down["warnings"]) == (True, False, 1)
    # What the API can still do: read warnings as last seen.
    assert (listed, shown) == (200, 200)
    assert api.sink.probes == [2.0, 2.0]


def test_health_while_the_store_loads_with_kafka_up():
    api = Api()
    api.view.ready.clear()
    api.registry.ready.clear()
    [(status, health)] = call(api, [("GET", "/health", None, None)])
    assert (status, health["status"], health["registry"]) == (200, "loading", "loading")
    assert (health["read"], health["act"]) == (False, False)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("level=I&level=IV", "level"),
        ("limit=1&limit=2000", "limit"),
        ("status=open&enterprise=HC001&status=closed", "status"),
    ],
)
def test_a_filter_given_twice_is_refused_naming_it(query, field):
    [(status, body)] = call(Api(), [("GET", f"/warnings?{query}", VIEWER, None)])
    assert (status, body["error"], body["field"]) == (422, "InvalidInput", field)
    expected = f"{field}: given more than once; each parameter takes one value"
    assert body["message"] == expected


@pytest.mark.parametrize(
    ("path", "field", "fragment"),
    [
        (f"{PATH}?evidence=maybe", "evidence", "valid boolean"),
        (f"{PATH}?foo=1", "foo", "Extra inputs are not permitted"),
        (f"{PATH}?evidence=false&evidence=true", "evidence", "more than once"),
        (f"{PATH}/cap?x=1", "x", "Extra inputs are not permitted"),
        (f"{PATH}/cap?x=1&x=2", "x", "more than once"),
        ("/silences?active=true", "active", "Extra inputs are not permitted"),
        ("/warnings?foo=1", "foo", "Extra inputs are not permitted"),
    ],
)
def test_every_read_route_refuses_an_unknown_repeated_or_bad_parameter(
    path, field, fragment
):
    [(status, body)] = call(Api(), [("GET", path, VIEWER, None)], seed=[OPENED])
    assert (status, body["error"], body["field"]) == (422, "InvalidInput", field)
    assert body["message"].startswith(f"{field}: ")
    assert fragment in body["message"]


@pytest.mark.parametrize(
    ("value", "shown"), [("false", False), ("0", False), ("No", False), ("1", True)]
)
def test_the_evidence_parameter_takes_the_usual_booleans(value, shown):
    [(status, body)] = call(
        Api(), [("GET", f"{PATH}?evidence={value}", VIEWER, None)], seed=[OPENED]
    )
    assert status == 200
    assert ("evidence" in body) is shown


def test_a_body_over_one_mib_is_a_413_naming_the_body():
    api = Api()
    api.sink.seed(OPENED)
    body = json.dumps({"comment": "x" * (1024 * 1024)}).encode()
    request_bytes = (
        f"POST /warnings/{OPENED.id}/acknowledge HTTP/1.1\r\n"
        "Host: a\r\nConnection: close\r\n"
        f"Authorization: Bearer {OFFICER}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    status, content_type, answer = raw_exchange(api, request_bytes)
    assert status == 413
    assert content_type.startswith("application/json")
    problem = json.loads(answer)
    assert (problem["error"], problem["field"]) == ("RequestEntityTooLarge", "body")
    assert "1048576" in problem["message"]


def test_a_warning_is_served_as_a_valid_cap_alert_to_any_reader():
    answers = call(
        Api(),
        [
            ("GET", f"/warnings/{OPENED.id}/cap", VIEWER, None),
            ("GET", f"/warnings/{OPENED.id}/cap", OFFICER, None),
            ("GET", "/warnings/rw-nothing/cap", VIEWER, None),
            ("GET", f"/warnings/{OPENED.id}/cap", None, None),
        ],
        seed=[OPENED],
    )
    (status, xml), (again, same), (missing, absent), (anonymous, _) = answers
    assert (status, again, missing, anonymous) == (200, 200, 404, 401)
    assert xml == same
    doc = validated(xml)
    ns = {"cap": CAP_NAMESPACE}
    assert doc.findtext("cap:identifier", namespaces=ns) == OPENED.version_id
    assert doc.findtext("cap:info/cap:onset", namespaces=ns) is not None
    assert absent["field"] == "id"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "acknowledge",
            {"comment": "on my way\u001b[2J\u001b[31mclosed by supervisor"},
            "comment",
        ),
        ("acknowledge", {"comment": "\u0000\u0001"}, "comment"),
        ("close", {"comment": "done\u0007"}, "comment"),
    ],
)
def test_control_characters_in_a_comment_are_refused_naming_the_field(
    path, body, field
):
    # They went into the audit trail, and `riskwatch warnings show` wrote
    # them raw to the next officer's terminal (ESC [2J clears it).
    api = Api()
    [(status, answer)] = call(
        api, [("POST", f"{PATH}/{path}", OFFICER, body)], seed=[OPENED]
    )
    assert status == 422
    assert answer["field"] == field
    assert "control character" in answer["message"]


def test_a_note_with_an_escape_sequence_is_refused_but_line_breaks_are_text():
    api = Api()
    answers = call(
        api,
        [
            ("POST", f"{PATH}/acknowledge", OFFICER, {"comment": "line 1\nline 2\t."}),
            (
                "POST",
                f"{PATH}/dispose",
                OFFICER,
                {"note": "valve\u001b]0;x\u0007 shut"},
            ),
        ],
        seed=[OPENED],
    )
    assert answers[0][0] == 200
    assert (answers[1][0], answers[1][1]["field"]) == (422, "note")
