"""How long a silence may last: per subject kind, from its start, longer for
a supervisor, and a maintenance window not planned too far ahead (D4 of the
attack run: a rule silence until 9999-12-31 was taken)."""

from datetime import timedelta

import pytest

from alert_rules.silences import SilenceKind, longest, span_refusal
from riskwatch.settings import SilenceLimits
from tests.unit.alert_rules.api.conftest import NOW, OFFICER, SUPERVISOR, Api, call

SUBJECTS = {
    "device": {"kind": "device", "id": "HC001/GD-101"},
    "enterprise": {"kind": "enterprise", "id": "HC001"},
    "rule": {"kind": "rule", "id": "combustible-gas-orange"},
}


def _body(kind, until, starts=None):
    body = {"subject": SUBJECTS[kind], "reason": "calibration", "until": until}
    if starts is not None:
        body["starts"] = starts
    return body


def _at(delta):
    return (NOW + delta).isoformat()


def test_a_rule_silence_for_ever_is_refused_naming_until_and_the_limit():
    [(status, answer)] = call(
        Api(), [("POST", "/silences", OFFICER, _body("rule", "9999-12-31T00:00:00Z"))]
    )
    assert (status, answer["error"], answer["field"]) == (422, "InvalidInput", "until")
    assert answer["message"].startswith(
        "until: an officer's rule silence may last at most 1 day (api.silences.rule_h)"
    )
    assert "a supervisor may record up to 4 days" in answer["message"]


@pytest.mark.parametrize(
    ("kind", "limit"),
    [
        ("device", timedelta(days=7)),
        ("enterprise", timedelta(days=3)),
        ("rule", timedelta(days=1)),
    ],
)
def test_each_kind_is_taken_up_to_its_limit_and_refused_past_it(kind, limit):
    api = Api()
    answers = call(
        api,
        [
            ("POST", "/silences", OFFICER, _body(kind, _at(limit))),
            ("POST", "/silences", OFFICER, _body(kind, _at(limit + timedelta(1)))),
        ],
    )
    assert [s for s, _ in answers] == [201, 422]
    assert answers[1][1]["field"] == "until"
    assert len(api.silences) == 1


def test_a_supervisor_may_silence_longer_but_not_for_ever():
    api = Api()
    answers = call(
        api,
        [
            ("POST", "/silences", SUPERVISOR, _body("rule", _at(timedelta(days=4)))),
            ("POST", "/silences", SUPERVISOR, _body("rule", _at(timedelta(days=5)))),
            ("POST", "/silences", OFFICER, _body("rule", _at(timedelta(days=4)))),
        ],
    )
    assert [s for s, _ in answers] == [201, 422, 422]
    assert answers[0][1]["silence"]["by"] == "sup-wang"
    assert answers[1][1]["message"].startswith(
        "until: a supervisor's rule silence may last at most 4 days"
    )
    assert "supervisor may record" not in answers[1][1]["message"]


def test_a_maintenance_window_is_measured_from_its_start_and_not_planned_too_far():
    starts = NOW + timedelta(days=10)
    answers = call(
        Api(),
        [
            # Seven days from a start ten days ahead: taken.
            (
                "POST",
                "/silences",
                OFFICER,
                _body(
                    "device",
                    (starts + timedelta(days=7)).isoformat(),
                    starts.isoformat(),
                ),
            ),
            # Eight days from its start: too long, though its start is ahead.
            (
                "POST",
                "/silences",
                OFFICER,
                _body(
                    "device",
                    (starts + timedelta(days=8)).isoformat(),
                    starts.isoformat(),
                ),
            ),
            # Begins 31 days ahead: refused naming starts.
            (
                "POST",
                "/silences",
                OFFICER,
                _body("device", _at(timedelta(days=32)), _at(timedelta(days=31))),
            ),
        ],
    )
    assert [(s, a.get("field")) for s, a in answers] == [
        (201, None),
        (422, "until"),
        (422, "starts"),
    ]
    assert answers[1][1]["message"].endswith(
        "this one lasts 8 days from its start; a supervisor may record up to 28 days"
    )
    assert answers[2][1]["message"] == (
        "starts: a maintenance window may start at most 30 days ahead "
        "(api.silences.ahead_h); this one starts in 31 days"
    )


def test_the_limits_are_settings():
    limits = SilenceLimits(rule_h=2, supervisor_factor=1.5)
    assert longest(SilenceKind.RULE, limits, supervisor=False) == timedelta(hours=2)
    assert longest(SilenceKind.RULE, limits, supervisor=True) == timedelta(hours=3)
    refused = span_refusal(
        SilenceKind.RULE,
        starts=None,
        until=NOW + timedelta(hours=2, minutes=1),
        now=NOW,
        limits=limits,
        supervisor=False,
    )
    assert refused == (
        "until",
        "an officer's rule silence may last at most 2 h (api.silences.rule_h); "
        "this one lasts 2 h 1 min from its start; a supervisor may record up to 3 h",
    )
    api = Api()
    api.silence_limits = limits
    [(status, _)] = call(
        api, [("POST", "/silences", OFFICER, _body("rule", _at(timedelta(hours=3))))]
    )
    assert status == 422
