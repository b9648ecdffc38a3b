"""The InfluxDB schema, read back from the line protocol of the points."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

import riskwatch
from alert_rules import RuleEngine, load_rules
from riskwatch.contracts import NS_PER_S, Measurement, Metric, ReadingRecord
from riskwatch.registry import load_registry
from stream_jobs.processing import process_reading
from stream_jobs.storage import (
    UNKNOWN,
    MemoryWriter,
    reading_points,
    reading_tags,
    warning_point,
)

SAMPLE_REGISTRY = Path(riskwatch.__file__).with_name("data") / "sample_registry.yaml"
TS_NS = 1_764_723_600_123_456_789  # 2025-12-03T01:00:00.123456789Z
TAGS = ("enterprise", "device", "district", "grid", "industry")


def parse_line(line):
    """(measurement, tags, fields, time) of one line of line protocol.

    Enough of the format for these points: no escaped commas, spaces or
    equals signs in names, quoted strings without spaces in the keys.
    """
    head, rest = line.split(" ", 1)
    fields_text, time_text = rest.rsplit(" ", 1)
    measurement, *tag_pairs = head.split(",")
    tags = dict(pair.split("=", 1) for pair in tag_pairs)
    fields = {}
    for pair in _split_fields(fields_text):
        key, raw = pair.split("=", 1)
        if raw.startswith('"'):
            fields[key] = raw[1:-1].replace('\\"', '"')
        elif raw.endswith("i"):
            fields[key] = int(raw[:-1])
        else:
            fields[key] = float(raw)
    return measurement, tags, fields, int(time_text)


def _split_fields(text):
    parts, current, quoted = [], "", False
    for i, char in enumerate(text):
        if char == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        if char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


@pytest.fixture(scope="module")
def hc001():
    return load_registry(SAMPLE_REGISTRY).by_id()["HC001"]


def record(**values):
    return ReadingRecord(
        enterprise="HC001",
        device="TT-101",
        ts_ns=TS_NS,
        metrics=[Measurement(metric=Metric(m), value=v) for m, v in values.items()],
        received_ns=TS_NS + 5,
    )


def test_reading_points_one_per_metric(hc001):
    points = reading_points(record(temperature_c=21.5, power_kw=0.0), hc001)
    parsed = [parse_line(p.to_line_protocol()) for p in points]
    assert [m for m, *_ in parsed] == ["temperature_c", "power_kw"]
    for (_, tags, fields, time_ns), value in zip(parsed, [21.5, 0.0], strict=True):
        assert tags == {
            "enterprise": "HC001",
            "device": "TT-101",
            "district": hc001.district,
            "grid": hc001.grid,
            "industry": hc001.industry.value,
        }
        assert fields == {"value": value}
        assert time_ns == TS_NS


def test_reading_of_an_unregistered_enterprise_has_unknown_tags():
    (point,) = reading_points(record(pressure_mpa=1.25), None)
    measurement, tags, fields, time_ns = parse_line(point.to_line_protocol())
    assert measurement == "pressure_mpa"
    assert tags == {
        "enterprise": "HC001",
        "device": "TT-101",
        "district": UNKNOWN,
        "grid": UNKNOWN,
        "industry": UNKNOWN,
    }
    assert fields == {"value": 1.25}
    assert time_ns == TS_NS


def test_tags_are_bounded_by_registry_and_fleet(hc001):
    # No sequence numbers, reading ids or times among the tags.
    assert set(reading_tags("HC001", "TT-101", hc001)) == set(TAGS)
    assert set(reading_tags("HC001", "TT-101", None)) == set(TAGS)


def test_the_same_reading_twice_is_the_same_point(hc001):
    first = [
        p.to_line_protocol() for p in reading_points(record(level_pct=40.0), hc001)
    ]
    again = record(level_pct=40.0).model_copy(update={"received_ns": TS_NS + 10**9})
    second = [p.to_line_protocol() for p in reading_points(again, hc001)]
    assert first == second


def test_memory_writer_keeps_line_protocol(hc001):
    writer = MemoryWriter()
    points = reading_points(record(temperature_c=20.0, level_pct=3.0), hc001)
    asyncio.run(writer.write(points))
    asyncio.run(writer.write([]))
    assert [parse_line(line)[0] for line in writer.lines] == [
        "temperature_c",
        "level_pct",
    ]


# Warnings ------------------------------------------------------------------


def _ns(moment):
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * NS_PER_S + delta.microseconds * 1000


@pytest.fixture(scope="module")
def spike_warning(hc001):
    """A warning record made by the real engine from a spike, as JSON."""
    engine = RuleEngine(load_rules(None), authority="Test Office")
    values = np.random.default_rng(5).normal(1.0, 0.01, 50)
    values[40] = 3.0
    state, warnings = None, []
    for i, value in enumerate(values):
        reading = ReadingRecord(
            enterprise="HC001",
            device="PT-101",
            # Readings at whole seconds plus 250 ms.
            ts_ns=TS_NS - 123_456_789 + 250_000_000 + i * 60 * NS_PER_S,
            metrics=[Measurement(metric=Metric.PRESSURE_MPA, value=float(value))],
            received_ns=TS_NS,
        )
        outcome = process_reading(reading, state, hc001, engine)
        state = outcome.state
        warnings.extend(outcome.warnings)
    (warning,) = warnings
    return json.loads(warning.model_dump_json())


def test_warning_point_schema(spike_warning):
    measurement, tags, fields, time_ns = parse_line(
        warning_point(spike_warning).to_line_protocol()
    )
    assert measurement == "warning"
    assert tags == {
        "level": "IV",
        "rule": "spike-or-drop",
        "enterprise": "HC001",
        "status": "open",
        "scope": "device",
        "subject": "PT-101",
        "metric": spike_warning["metric"],
        "version": "1",
    }
    assert fields == {
        "id": spike_warning["id"],
        "device": "PT-101",
        "title": spike_warning["title"],
    }
    issued = datetime.fromisoformat(spike_warning["issue_time"])
    assert abs(time_ns - _ns(issued)) < 1000


def test_warning_point_carries_the_platform_reference_once_known(spike_warning):
    plain = parse_line(warning_point(spike_warning).to_line_protocol())
    noted = parse_line(
        warning_point(
            {**spike_warning, "platform_reference": "SP-000001"}
        ).to_line_protocol()
    )
    # Same measurement, tags and time: InfluxDB merges the field into the point.
    assert (noted[0], noted[1], noted[3]) == (plain[0], plain[1], plain[3])
    assert noted[2] == {**plain[2], "platform_reference": "SP-000001"}


def test_points_sharing_an_issue_time_stay_apart(spike_warning):
    """Two devices warned by one rule on the same reading time, two metrics of
    one device, two versions of one warning issued together: InfluxDB keys
    a point by measurement, tags and time, so their keys must differ."""
    other_device = {
        **spike_warning,
        "device_id": "PT-102",
        "scope": {**spike_warning["scope"], "id": "PT-102"},
    }
    other_metric = {**spike_warning, "metric": "temperature_c"}
    acknowledged = {
        **spike_warning,
        "history": [*spike_warning["history"], spike_warning["history"][0]],
    }
    keys = set()
    for warning in (spike_warning, other_device, other_metric, acknowledged):
        measurement, tags, _, time_ns = parse_line(
            warning_point(warning).to_line_protocol()
        )
        keys.add((measurement, tuple(sorted(tags.items())), time_ns))
    assert len(keys) == 4


def test_warning_point_time_is_exactly_the_issue_time(spike_warning):
    *_, time_ns = parse_line(warning_point(spike_warning).to_line_protocol())
    assert time_ns == _ns(datetime.fromisoformat(spike_warning["issue_time"]))


def test_warning_point_without_registry_fields_uses_unknown():
    moment = datetime(2026, 12, 3, 8, tzinfo=UTC) + timedelta(seconds=30)
    point = warning_point(
        {"id": "W-9", "issue_time": moment.isoformat(), "device_id": None}
    )
    measurement, tags, fields, time_ns = parse_line(point.to_line_protocol())
    assert measurement == "warning"
    assert tags == dict.fromkeys(
        (
            "level",
            "rule",
            "enterprise",
            "status",
            "scope",
            "subject",
            "metric",
            "version",
        ),
        UNKNOWN,
    )
    assert fields == {"id": "W-9", "device": "", "title": ""}
    assert time_ns == _ns(moment)


def test_warning_point_falls_back_to_detection_time():
    moment = datetime(2026, 12, 3, 8, tzinfo=UTC)
    point = warning_point({"id": "W-9", "detection_time": moment.isoformat()})
    assert parse_line(point.to_line_protocol())[3] == _ns(moment)
