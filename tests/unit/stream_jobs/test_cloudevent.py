"""Warning versions as CloudEvents: attributes, stability, round trip."""

import json

import pytest

from alert_rules import Level, WarningRecord, WarningStatus
from stream_jobs.cloudevent import (
    EVENT_TYPES,
    LEVEL_TYPES,
    EventError,
    from_request,
    source_of,
    to_http,
)

SOURCE = source_of("office-7")


def test_open_version_is_an_opened_event(make_warning):
    record = make_warning()
    headers, body = to_http(record, SOURCE)
    event = json.loads(body)
    assert headers == {
        "Content-Type": "application/cloudevents+json",
        "Idempotency-Key": f"{record.id}.v1",
    }
    assert {k: v for k, v in event.items() if k != "data"} == {
        "specversion": "1.0",
        "id": f"{record.id}.v1",
        "source": "urn:riskwatch:office-7",
        "type": "org.riskwatch.warning.opened",
        "subject": record.id,
        "time": "2026-12-03T01:02:00.250000Z",
        "datacontenttype": "application/json",
    }
    assert WarningRecord.model_validate(event["data"]) == record


def test_resolved_version_is_a_resolved_event_with_its_own_id(make_warning):
    opened, resolved = make_warning(), make_warning(resolved=True)
    event = json.loads(to_http(resolved, SOURCE)[1])
    assert event["type"] == "org.riskwatch.warning.resolved"
    assert event["id"] == f"{resolved.id}.v2" != f"{opened.id}.v1"
    assert event["subject"] == opened.id
    assert event["time"] == resolved.issue_time.isoformat().replace("+00:00", "Z")


def test_the_same_version_gives_the_same_bytes(make_warning):
    # What a retry or a restart re-sends: the same id, and the same body the
    # signature is computed over.
    record = make_warning()
    again = WarningRecord.from_json(record.to_json())
    assert to_http(record, SOURCE) == to_http(again, SOURCE)


def test_every_status_has_an_event_type_apart_from_the_level_changes():
    assert set(EVENT_TYPES) == set(WarningStatus)
    assert not set(EVENT_TYPES.values()) & set(LEVEL_TYPES)
    assert all(t.startswith("org.riskwatch.warning.") for t in LEVEL_TYPES)
    assert LEVEL_TYPES == (
        "org.riskwatch.warning.escalated",
        "org.riskwatch.warning.deescalated",
    )


def test_from_request_round_trips(make_warning):
    record = make_warning(resolved=True)
    headers, body = to_http(record, SOURCE)
    event = from_request({k.upper(): v for k, v in headers.items()}, body)
    assert event.get_id() == record.version_id
    assert event.get_source() == SOURCE
    assert event.get_data() == record.model_dump(mode="json")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[1, 2]", "CloudEvent JSON object"),
        (b"not json", "CloudEvent JSON object"),
        (b"{", "not a CloudEvent"),
        (b'{"id": "1", "source": "s"}', "type"),
        (b'{"id": "1", "source": "s", "type": "t", "specversion": "0.9"}', "1.0"),
    ],
)
def test_from_request_refuses_what_is_no_cloudevent(body, reason):
    headers = {"content-type": "application/cloudevents+json"}
    with pytest.raises(EventError, match=reason):
        from_request(headers, body)


def _relevelled(record, level, status=WarningStatus.OPEN):
    """``record`` moved to ``level`` by the engine, in status ``status``."""
    last = record.history[-1]
    entry = last.model_copy(
        update={
            "status": status,
            "from_status": last.status,
            "from_level": record.level,
            "level": level,
        }
    )
    return record.model_copy(
        update={
            "level": level,
            "colour": level.colour,
            "status": status,
            "history": [*record.history, entry],
        }
    )


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [("II", "I", "escalated"), ("I", "II", "deescalated"), ("IV", "III", "escalated")],
)
@pytest.mark.parametrize("status", [WarningStatus.OPEN, WarningStatus.ACKNOWLEDGED])
def test_a_level_change_is_an_escalated_or_deescalated_event(
    make_warning, before, after, kind, status
):
    record = _relevelled(make_warning(level=before), Level(after), status)
    event = json.loads(to_http(record, SOURCE)[1])
    assert event["type"] == f"org.riskwatch.warning.{kind}"
    assert event["id"] == f"{record.id}.v2"
    assert event["subject"] == record.id
    assert event["data"]["level"] == after
    assert event["data"]["status"] == status.value
