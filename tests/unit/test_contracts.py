"""Telemetry payload and topic parsing: every accepted form, every rejection.

Expected instants are computed here from ``datetime`` arithmetic and integer
multiplication, never from the parser under test.
"""

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from riskwatch.contracts import (
    EARLIEST_NS,
    NS_PER_S,
    Finding,
    Metric,
    MetricValue,
    PayloadError,
    ReadingRecord,
    epoch_to_ns,
    parse_payload,
    parse_timestamp,
    parse_topic,
    range_error,
    trusted_finding,
)

ROOT = "riskwatch/v1"
# 2025-12-03 01:40:00 UTC: the gateway's clock in these tests.
NOW_NS = int(datetime(2025, 12, 3, 1, 40, tzinfo=UTC).timestamp()) * NS_PER_S
SKEW_S = 300.0
MAX_BYTES = 4096
# 2025-12-03 01:00:00 UTC, the instant most accepted forms below spell.
T_S = int(datetime(2025, 12, 3, 1, 0, tzinfo=UTC).timestamp())
T_NS = T_S * NS_PER_S
POWER = [{"metric": "power_kw", "value": 12.5, "unit": "kW"}]


def _ns(moment: datetime) -> int:
    """Exact epoch ns of an aware datetime (µs resolution), without floats."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * NS_PER_S + delta.microseconds * 1000


def _body(**fields):
    return json.dumps({"metrics": POWER, **fields}).encode()


def _parse(raw, *, now_ns=NOW_NS, max_skew_s=SKEW_S, max_bytes=MAX_BYTES):
    return parse_payload(raw, now_ns=now_ns, max_skew_s=max_skew_s, max_bytes=max_bytes)


# Accepted timestamps ---------------------------------------------------------

ACCEPTED_TS = [
    ("iso Z", "2025-12-03T01:00:00Z", T_NS),
    ("iso +00:00", "2025-12-03T01:00:00+00:00", T_NS),
    ("iso +08:00", "2025-12-03T09:00:00+08:00", T_NS),
    ("iso -05:30", "2025-12-02T19:30:00-05:30", T_NS),
    ("iso fraction", "2025-12-03T01:00:00.123456Z", T_NS + 123_456_000),
    ("iso millis", "2025-12-03T09:00:00.250+08:00", T_NS + 250_000_000),
    ("epoch s int", T_S, T_NS),
    ("epoch s float", T_S + 0.5, T_NS + 500_000_000),
    ("epoch ms", T_S * 1000 + 123, T_NS + 123_000_000),
    ("epoch us", T_S * 1_000_000 + 123_456, T_NS + 123_456_000),
    ("epoch ns", T_NS + 123_456_789, T_NS + 123_456_789),
    ("epoch s string", str(T_S), T_NS),
    ("epoch s string, spaces", f" {T_S} ", T_NS),
    ("epoch ms string, whole", str(T_S * 1000), T_NS),
    ("epoch us string, whole", str(T_S * 1_000_000), T_NS),
    ("epoch ns string", str(T_NS + 123_456_789), T_NS + 123_456_789),
]


@pytest.mark.parametrize(
    ("ts", "expected"),
    [pytest.param(ts, ns, id=name) for name, ts, ns in ACCEPTED_TS],
)
def test_accepted_timestamp_forms(ts, expected):
    assert _parse(_body(ts=ts)).ts == expected


# The unit of an epoch number is told apart by magnitude (contracts.epoch_to_ns):
# seconds < 1e11 <= ms < 1e14 <= µs < 1e17 <= ns. Just below a boundary the
# smaller unit applies, at it the larger one.
@pytest.mark.parametrize(
    ("number", "expected_ns"),
    [
        pytest.param(10**11 - 1, (10**11 - 1) * NS_PER_S, id="s, top"),
        pytest.param(10**11, 10**11 * 10**6, id="ms, bottom"),
        pytest.param(10**14 - 1, (10**14 - 1) * 10**6, id="ms, top"),
        pytest.param(10**14, 10**14 * 10**3, id="us, bottom"),
        pytest.param(10**17 - 1, (10**17 - 1) * 10**3, id="us, top"),
        pytest.param(10**17, 10**17, id="ns, bottom"),
    ],
)
def test_epoch_unit_boundaries(number, expected_ns):
    assert epoch_to_ns(number) == expected_ns


@pytest.mark.parametrize(
    "number",
    [
        pytest.param(10**11, id="ms bottom is 1973"),
        pytest.param(10**14, id="us bottom is 1973"),
        pytest.param(10**17, id="ns bottom is 1973"),
    ],
)
def test_epoch_unit_bottoms_are_before_2000_and_rejected(number):
    with pytest.raises(ValueError, match="before 2000-01-01"):
        parse_timestamp(number)


@pytest.mark.parametrize(
    "number",
    [
        pytest.param(10**11 - 1, id="s top"),
        pytest.param(10**14 - 1, id="ms top"),
        pytest.param(10**17 - 1, id="us top"),
    ],
)
def test_epoch_unit_tops_are_the_far_future(number):
    # Year 5138: not a device time; refused like any date after 2100.
    with pytest.raises(ValueError, match="after 2100-01-01"):
        parse_timestamp(number)
    with pytest.raises(PayloadError) as caught:
        _parse(_body(ts=number))
    assert caught.value.field == "ts"
    assert "after 2100-01-01" in caught.value.reason


def test_earliest_accepted_instant_is_2000():
    assert parse_timestamp("2000-01-01T00:00:00Z") == EARLIEST_NS
    with pytest.raises(ValueError, match="before 2000-01-01"):
        parse_timestamp("1999-12-31T23:59:59.999999Z")


@pytest.mark.parametrize(
    "number",
    [
        pytest.param(T_S * 1000 + 123, id="ms"),
        pytest.param(T_S * 1_000_000 + 123_457, id="us"),
    ],
)
def test_numeric_string_is_the_same_instant_as_the_number(number):
    assert parse_timestamp(str(number)) == parse_timestamp(number)


# Values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(12.5, 12.5, id="float"),
        pytest.param(12, 12.0, id="int"),
        pytest.param("12.5", 12.5, id="string"),
        pytest.param(" -3e2 ", -300.0, id="string exponent, spaces"),
    ],
)
def test_values_as_numbers_and_strings(value, expected):
    raw = json.dumps(
        {"ts": T_S, "metrics": [{"metric": "power_kw", "value": value, "unit": "kW"}]}
    ).encode()
    assert _parse(raw).metrics[0].value == expected


@pytest.mark.parametrize(
    ("metric", "unit", "canonical"),
    [
        ("water_m3", "m³", "m3"),
        ("temperature_c", "degC", "°C"),
        ("temperature_c", "℃", "°C"),
        ("combustible_gas_lel", "%LEL", "%LEL"),
    ],
)
def test_unit_aliases_become_the_canonical_unit(metric, unit, canonical):
    raw = json.dumps(
        {"ts": T_S, "metrics": [{"metric": metric, "value": 1, "unit": unit}]}
    ).encode()
    parsed = _parse(raw)
    assert parsed.metrics[0].metric == Metric(metric)
    assert parsed.metrics[0].unit == canonical


def test_seq_is_optional_and_kept():
    assert _parse(_body(ts=T_S)).seq is None
    assert _parse(_body(ts=T_S, seq=0)).seq == 0
    assert _parse(_body(ts=T_S, seq=42)).seq == 42


# Rejections ------------------------------------------------------------------


def _metric(value=1.0, metric="power_kw", unit="kW"):
    return {"metric": metric, "value": value, "unit": unit}


def _raw(text):
    return text.encode() if isinstance(text, str) else text


REJECTED = [
    # (id, raw body, field, a fragment of the reason)
    ("value NaN literal", f'{{"ts":{T_S},"metrics":[{{"metric":"power_kw",'
     '"value":NaN,"unit":"kW"}]}', "metrics.0.value", "finite"),
    ("value Infinity literal", f'{{"ts":{T_S},"metrics":[{{"metric":"power_kw",'
     '"value":-Infinity,"unit":"kW"}]}', "metrics.0.value", "finite"),
    ("value Infinity string", _body(ts=T_S, metrics=[_metric("Infinity")]),
     "metrics.0.value", "finite"),
    ("value NaN string", _body(ts=T_S, metrics=[_metric("nan")]),
     "metrics.0.value", "finite"),
    ("value overflowing string", _body(ts=T_S, metrics=[_metric("1e400")]),
     "metrics.0.value", "finite"),
    ("value with underscores", _body(ts=T_S, metrics=[_metric("1_000")]),
     "metrics.0.value", "expected a number, got '1_000'"),
    ("value with a leading dot", _body(ts=T_S, metrics=[_metric(".5")]),
     "metrics.0.value", "expected a number"),
    ("value not a number", _body(ts=T_S, metrics=[_metric("high")]),
     "metrics.0.value", "expected a number"),
    ("value boolean", _body(ts=T_S, metrics=[_metric(True)]),
     "metrics.0.value", "expected a number, got true"),
    ("value null", _body(ts=T_S, metrics=[_metric(None)]),
     "metrics.0.value", "expected a number, got null"),
    ("value object", _body(ts=T_S, metrics=[_metric({"v": 1})]),
     "metrics.0.value", "expected a number, got an object"),
    ("value array", _body(ts=T_S, metrics=[_metric([1])]),
     "metrics.0.value", "expected a number, got an array"),
    ("unit null", _body(ts=T_S, metrics=[_metric(unit=None)]),
     "metrics.0.unit", "expected a string, got null"),
    ("metric null", _body(ts=T_S, metrics=[_metric(metric=None)]),
     "metrics.0.metric", "unknown metric null; known: power_kw"),
    ("metrics an object", _body(ts=T_S, metrics={}), "metrics",
     "expected an array, got an object"),
    ("metric item a number", _body(ts=T_S, metrics=[1]), "metrics.0",
     "expected an object, got 1"),
    ("ts NaN literal", f'{{"ts":NaN,"metrics":{json.dumps(POWER)}}}', "ts", "finite"),
    ("ts Infinity literal", f'{{"ts":Infinity,"metrics":{json.dumps(POWER)}}}',
     "ts", "finite"),
    ("ts Infinity string", _body(ts="Infinity"), "ts", "finite"),
    ("ts boolean", _body(ts=True), "ts", "expected ISO 8601 or epoch time, got true"),
    ("ts null", _body(ts=None), "ts", "expected ISO 8601 or epoch time, got null"),
    ("ts object", _body(ts={}), "ts", "expected ISO 8601 or epoch time, got an object"),
    ("ts not a time", _body(ts="yesterday"), "ts", "expected ISO 8601 or epoch"),
    ("unknown metric", _body(ts=T_S, metrics=[_metric(metric="humidity_pct")]),
     "metrics.0.metric", "unknown metric 'humidity_pct'; known: power_kw"),
    ("unknown unit", _body(ts=T_S, metrics=[_metric(unit="W")]),
     "metrics.0.unit", "unit 'W' is not valid for power_kw; use 'kW'"),
    ("missing timestamp", json.dumps({"metrics": POWER}), "ts",
     "required field is missing"),
    ("missing metrics", json.dumps({"ts": T_S}), "metrics",
     "required field is missing"),
    ("naive ISO time", _body(ts="2025-12-03T01:00:00"), "ts", "has no UTC offset"),
    ("date only", _body(ts="2025-12-03"), "ts", "has no UTC offset"),
    ("ISO before 2000", _body(ts="1999-12-31T23:59:59Z"), "ts",
     "is before 2000-01-01"),
    ("epoch before 2000", _body(ts=946_684_799), "ts", "is before 2000-01-01"),
    ("negative epoch", _body(ts=-T_S), "ts", "is before 2000-01-01"),
    ("future beyond skew", _body(ts=NOW_NS + 301 * NS_PER_S), "ts",
     "301s in the future (allowed skew 300s)"),
    ("future beyond skew by 1 ns", _body(ts=NOW_NS + 300 * NS_PER_S + 1), "ts",
     "in the future"),
    ("non-UTF-8", b'{"ts": "\xff\xfe"}', "payload", "not UTF-8 (byte 8)"),
    ("invalid JSON", f'{{"ts":{T_S},"metrics":[', "payload", "invalid JSON"),
    ("not an object", "[1, 2]", "payload", "expected an object, got an array"),
    ("byte-order mark", b"\xef\xbb\xbf" + _body(ts=T_S), "payload",
     "starts with a UTF-8 byte-order mark"),
    ("empty body", b"", "payload", "invalid JSON"),
    ("empty metrics", _body(ts=T_S, metrics=[]), "metrics", "at least 1 item"),
    ("duplicate metric", _body(ts=T_S, metrics=[_metric(1), _metric(2)]),
     "metrics", "metric power_kw appears twice"),
    ("extra top-level field", _body(ts=T_S, device="PT-101"), "device",
     "Extra inputs are not permitted"),
    ("extra metric field", _body(ts=T_S, metrics=[{**_metric(), "q": 1}]),
     "metrics.0.q", "Extra inputs are not permitted"),
    ("negative seq", _body(ts=T_S, seq=-1), "seq", "greater than or equal to 0"),
    ("fractional seq", _body(ts=T_S, seq=1.5), "seq", "expected an integer, got 1.5"),
    ("seq true", _body(ts=T_S, seq=True), "seq", "expected an integer, got true"),
    ("seq false", _body(ts=T_S, seq=False), "seq", "expected an integer, got false"),
    ("seq string", _body(ts=T_S, seq="1"), "seq", "expected an integer, got '1'"),
    ("seq with a fraction of 0", _body(ts=T_S, seq=1.0), "seq",
     "expected an integer, got 1.0"),
    ("seq array", _body(ts=T_S, seq=[1]), "seq", "expected an integer, got an array"),
    ("seq beyond 64 bits", _body(ts=T_S, seq=2**64), "seq",
     "less than or equal to 9223372036854775807"),
    ("seq of 24 digits", _body(ts=T_S, seq=10**23), "seq", "less than or equal"),
    ("value given twice", f'{{"ts":{T_S},"metrics":[{{"metric":"pressure_mpa",'
     '"value":1.2,"value":99,"unit":"MPa"}]}', "metrics.0.value", "given twice"),
    ("metric given twice", f'{{"ts":{T_S},"metrics":[{{"metric":"pressure_mpa",'
     '"metric":"power_kw","value":1,"unit":"kW"}]}', "metrics.0.metric",
     "given twice"),
    ("ts given twice", f'{{"ts":{T_S},"metrics":{json.dumps(POWER)},"ts":{T_S}}}',
     "ts", "given twice"),
    ("key given twice in an extra field", f'{{"ts":{T_S},"metrics":'
     f'{json.dumps(POWER)},"x":[{{"a":1}},{{"b":{{"c":1,"c":1}}}}]}}', "x.1.b.c",
     "given twice"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [pytest.param(_raw(raw), f, r, id=name) for name, raw, f, r in REJECTED],
)
def test_rejections_name_the_field_and_reason(raw, field, reason):
    with pytest.raises(PayloadError) as caught:
        _parse(raw)
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert str(caught.value) == f"{field}: {caught.value.reason}"


def test_a_key_given_twice_is_refused_whichever_value_is_valid():
    # A JSON reader keeps the last: these were once stored as 99.0 and power_kw.
    for raw in (
        f'{{"ts":{T_S},"metrics":[{{"metric":"pressure_mpa","value":1.2,'
        '"value":99,"unit":"MPa"}]}',
        f'{{"ts":{T_S},"metrics":[{{"metric":"pressure_mpa","value":"x",'
        '"value":1.2,"unit":"MPa"}]}',
    ):
        with pytest.raises(PayloadError) as caught:
            _parse(raw.encode())
        assert str(caught.value) == "metrics.0.value: given twice"


def test_a_key_given_twice_is_named_before_other_problems():
    raw = '{"ts":"yesterday","metrics":[{"metric":"humidity","unit":"%",'
    raw += '"unit":"%","value":1}]}'
    with pytest.raises(PayloadError) as caught:
        _parse(raw.encode())
    assert str(caught.value) == "metrics.0.unit: given twice"


def test_the_same_key_in_different_objects_is_no_repeat():
    raw = _body(ts=T_S, metrics=[_metric(1), _metric(2, "level_pct", "%")])
    assert [m.value for m in _parse(raw).metrics] == [1.0, 2.0]


NOT_JSON_WORDS = ("NoneType", "None", "True", "False", "dict", "list", "bool")


ODD_JSON = [None, True, False, {}, [], [1], {"a": None}]


@pytest.mark.parametrize(
    ("where", "odd"),
    [
        (where, odd)
        for where in ("ts", "seq", "metric", "value", "unit", "item")
        for odd in ODD_JSON
        if (where, odd) != ("seq", None)  # no seq: accepted
    ],
)
def test_reasons_name_json_values_in_json_words(where, odd):
    if where in ("ts", "seq"):
        raw = _body(**{"ts": T_S, where: odd})
    elif where == "item":
        raw = _body(ts=T_S, metrics=[odd])
    else:
        raw = _body(ts=T_S, metrics=[{**_metric(), where: odd}])
    with pytest.raises(PayloadError) as caught:
        _parse(raw)
    words = caught.value.reason.replace(",", " ").replace(";", " ").split()
    assert not set(words) & set(NOT_JSON_WORDS), caught.value.reason


def test_the_range_reason_says_an_before_a_vowel():
    energy = MetricValue(metric="energy_kwh", value=-1, unit="kWh")
    gas = MetricValue(metric="gas_m3", value=-1, unit="m3")
    assert range_error(energy).reason == (
        "value -1 is outside what an energy_kwh sensor can report (at least 0 kWh)"
    )
    assert range_error(gas).reason == (
        "value -1 is outside what a gas_m3 sensor can report (at least 0 m3)"
    )


def test_seq_null_is_no_seq():
    assert _parse(_body(ts=T_S, seq=None)).seq is None


@pytest.mark.parametrize("seq", [True, "1", 1.0])
def test_the_readings_record_takes_only_an_integer_seq(seq):
    fields = {"enterprise": "E", "device": "D", "ts_ns": T_NS, "received_ns": T_NS}
    with pytest.raises(ValidationError):
        ReadingRecord(**fields, metrics=[], seq=seq)
    record = ReadingRecord(**fields, metrics=[], seq=7)
    assert ReadingRecord.model_validate_json(record.model_dump_json()) == record
    written = record.model_dump_json().replace('"seq":7', f'"seq":{json.dumps(seq)}')
    with pytest.raises(ValidationError):
        ReadingRecord.model_validate_json(written)


def test_the_first_offending_metric_is_named():
    raw = _body(ts=T_S, metrics=[_metric(), _metric(metric="level_pct", unit="kW")])
    with pytest.raises(PayloadError) as caught:
        _parse(raw)
    assert caught.value.field == "metrics.1.unit"


def test_future_exactly_at_the_skew_limit_is_accepted():
    limit = NOW_NS + int(SKEW_S) * NS_PER_S
    assert _parse(_body(ts=limit)).ts == limit


def test_future_exactly_at_the_limit_with_an_arbitrary_clock_is_accepted():
    now = NOW_NS + 1
    limit = now + int(SKEW_S) * NS_PER_S
    assert _parse(_body(ts=limit), now_ns=now).ts == limit


def test_zero_skew_accepts_now_and_rejects_the_next_second():
    assert _parse(_body(ts=NOW_NS // NS_PER_S), max_skew_s=0).ts == NOW_NS
    with pytest.raises(PayloadError, match="1s in the future"):
        _parse(_body(ts=NOW_NS // NS_PER_S + 1), max_skew_s=0)


def test_payload_size_limit_is_inclusive():
    raw = _body(ts=T_S)
    assert _parse(raw, max_bytes=len(raw)).ts == T_NS
    with pytest.raises(PayloadError) as caught:
        _parse(raw, max_bytes=len(raw) - 1)
    assert caught.value.field == "payload"
    assert caught.value.reason == f"{len(raw)} bytes exceeds the {len(raw) - 1} limit"


def test_size_limit_is_checked_before_decoding():
    with pytest.raises(PayloadError, match="exceeds the 16 limit"):
        _parse(b"\xff" * 17, max_bytes=16)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(f'{{"ts":1{"0" * 400},"metrics":{json.dumps(POWER)}}}', id="ts"),
        pytest.param(
            f'{{"ts":{T_S},"metrics":[{{"metric":"power_kw",'
            f'"value":1{"0" * 400},"unit":"kW"}}]}}',
            id="value",
        ),
    ],
)
def test_huge_integers_are_payload_errors(raw):
    with pytest.raises(PayloadError):
        _parse(raw.encode())


# Topics ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "enterprise", "device", "kind"),
    [
        (f"{ROOT}/E001/PT-101/telemetry", "E001", "PT-101", "telemetry"),
        (f"{ROOT}/HC001/TT-101/status", "HC001", "TT-101", "status"),
        (f"{ROOT}/e_1/dev.2/telemetry", "e_1", "dev.2", "telemetry"),
        (f"{ROOT}/{'E' * 64}/D/telemetry", "E" * 64, "D", "telemetry"),
    ],
)
def test_good_topics(topic, enterprise, device, kind):
    address = parse_topic(topic, ROOT)
    assert (address.enterprise, address.device, address.kind) == (
        enterprise,
        device,
        kind,
    )


def test_root_with_trailing_slash_is_the_same_root():
    assert parse_topic(f"{ROOT}/E1/D1/status", ROOT + "/").kind == "status"


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        pytest.param(f"{ROOT}/E001/telemetry", "is not", id="too shallow"),
        pytest.param(f"{ROOT}/E001/A/B/telemetry", "is not", id="too deep"),
        pytest.param(f"{ROOT}/E001/PT-101/metrics", "is not", id="unknown kind"),
        pytest.param("other/v1/E001/PT-101/telemetry", "is not", id="wrong root"),
        pytest.param(f"{ROOT}/E001/PT-101/telemetry/", "is not", id="trailing /"),
        pytest.param(f"{ROOT}//PT-101/telemetry", "enterprise id ''", id="empty"),
        pytest.param(f"{ROOT}/-E001/PT-101/telemetry", "enterprise id", id="dash"),
        pytest.param(f"{ROOT}/E001/PT 101/telemetry", "device id", id="space"),
        pytest.param(f"{ROOT}/E001/+/telemetry", "device id '+'", id="wildcard"),
        pytest.param(f"{ROOT}/{'E' * 65}/D/telemetry", "enterprise id", id="65"),
    ],
)
def test_bad_topics(topic, reason):
    with pytest.raises(PayloadError) as caught:
        parse_topic(topic, ROOT)
    assert caught.value.field == "topic"
    assert reason in caught.value.reason


# Properties ------------------------------------------------------------------

_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2025, 12, 3, 1, 40, tzinfo=UTC)  # NOW_NS
instants = st.datetimes(
    min_value=_EARLIEST.replace(tzinfo=None),
    max_value=_LATEST.replace(tzinfo=None),
    timezones=st.just(UTC),
)
# (unit, ns per unit)
UNITS = [("s", NS_PER_S), ("ms", 10**6), ("us", 10**3), ("ns", 1)]


@given(moment=instants, unit=st.sampled_from(UNITS), extra_ns=st.integers(0, 999))
def test_integer_epochs_round_trip_exactly(moment, unit, extra_ns):
    _name, per_unit = unit
    instant_ns = _ns(moment) + extra_ns
    number = instant_ns // per_unit
    expected = number * per_unit
    assert _parse(_body(ts=number)).ts == expected


@given(moment=instants, unit=st.sampled_from(UNITS), extra_ns=st.integers(0, 999))
def test_epoch_strings_round_trip_within_the_unit(moment, unit, extra_ns):
    _name, per_unit = unit
    number = (_ns(moment) + extra_ns) // per_unit
    parsed = _parse(_body(ts=str(number))).ts
    assert abs(parsed - number * per_unit) < per_unit


@given(moment=instants, offset_min=st.integers(-14 * 60, 14 * 60))
def test_iso_with_any_offset_is_the_same_instant(moment, offset_min):
    local = moment.astimezone(timezone(timedelta(minutes=offset_min)))
    assert _parse(_body(ts=local.isoformat())).ts == _ns(moment)


@given(seconds=st.floats(946_684_800.0, NOW_NS / NS_PER_S))
def test_fractional_seconds_round_trip_within_a_microsecond(seconds):
    # A double near 1.7e9 s resolves about 0.24 µs: fractional seconds, as a
    # number or as a string, are as exact as that and no more.
    expected = seconds * NS_PER_S
    for encoded in (seconds, repr(seconds)):
        assert abs(_parse(_body(ts=encoded)).ts - expected) <= 1000


@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_any_finite_value_round_trips(value):
    for encoded in (value, repr(value)):
        raw = _body(ts=T_S, metrics=[_metric(encoded)])
        assert _parse(raw).metrics[0].value == value


def _outcome(raw):
    try:
        return _parse(raw, max_bytes=1 << 20)
    except PayloadError as exc:
        return exc


@given(raw=st.binary(max_size=600))
@settings(max_examples=300)
def test_arbitrary_bytes_raise_only_payload_errors(raw):
    # Anything but a PayloadError propagates out of _outcome and fails the test.
    result = _outcome(raw)
    if isinstance(result, PayloadError):
        assert result.field
        assert result.reason


_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["NaN", "Infinity", "-inf", "2025-12-03T01:00:00Z", "1e400"]),
)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_metric_item = st.fixed_dictionaries(
    {
        "metric": st.sampled_from([m.value for m in Metric]) | st.text(max_size=8),
        "value": _json_leaf,
        "unit": st.sampled_from(["kW", "kWh", "m3", "°C", "MPa", "%"]) | _json_leaf,
    }
)
_payload_shaped = st.fixed_dictionaries(
    {"ts": _json_leaf, "metrics": st.lists(_metric_item, max_size=3) | _json},
    optional={"seq": _json_leaf, "extra": _json},
)


@given(document=_payload_shaped)
@settings(max_examples=300)
def test_payload_shaped_json_raises_only_payload_errors(document):
    result = _outcome(json.dumps(document, allow_nan=True).encode())
    if isinstance(result, PayloadError):
        assert result.field
        assert result.reason
    else:
        parsed = result
        assert EARLIEST_NS <= parsed.ts <= NOW_NS + SKEW_S * NS_PER_S
        assert all(math.isfinite(m.value) for m in parsed.metrics)


@pytest.mark.parametrize(
    "values",
    [
        ("robust_z", 0.75, 31.5, 20.0, 18.0, 22.0, "31.5 is 5.1 spreads above"),
        ("stuck", 1.0, None, None, None, None, ""),
    ],
)
def test_a_trusted_finding_is_the_validated_model(values):
    names = ("detector", "score", "observed", "expected", "low", "high", "detail")
    validated = Finding(**dict(zip(names, values, strict=True)))
    trusted = trusted_finding(*values)
    assert trusted == validated
    assert trusted.model_dump() == validated.model_dump()
    assert trusted.model_dump_json() == validated.model_dump_json()
    assert Finding.model_validate_json(trusted.model_dump_json()) == validated
    with pytest.raises(ValidationError):
        trusted.score = 0.5  # frozen, like the validated one
