"""The data contracts of riskwatch, as pydantic models: their single source.

docs/contracts.md describes the same contracts for people; when the two
disagree, this module is right and the document is a bug.

Wire formats:

* MQTT topics ``<root>/<enterprise>/<device>/telemetry`` (readings) and
  ``<root>/<enterprise>/<device>/status`` (``online``/``offline``, retained,
  also the last will), with ``root`` = ``riskwatch/v1``.
* Telemetry payload: :class:`TelemetryPayload` (JSON, UTF-8).
* Kafka readings record: :class:`ReadingRecord`, keyed by ``<enterprise>/<device>``.
* Kafka dead-letter record: :class:`DeadLetter`.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import json
import math
import re
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)
NS_PER_S = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Readings dated before this are not real device times (an unset RTC, a
# counter mistaken for a timestamp).
EARLIEST_NS = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp()) * NS_PER_S
LATEST_NS = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp()) * NS_PER_S


class Metric(StrEnum):
    """What a reading measures; each has one canonical unit."""

    POWER_KW = "power_kw"
    ENERGY_KWH = "energy_kwh"
    WATER_M3 = "water_m3"
    GAS_M3 = "gas_m3"
    TEMPERATURE_C = "temperature_c"
    PRESSURE_MPA = "pressure_mpa"
    COMBUSTIBLE_GAS_LEL = "combustible_gas_lel"
    TOXIC_GAS_PPM = "toxic_gas_ppm"
    LEVEL_PCT = "level_pct"


@dataclass(frozen=True)
class MetricInfo:
    """A metric's unit and what a value of it may physically be.

    ``low``/``high`` bound what a working sensor can report (inclusive; None:
    no bound). A value outside is a sensor fault, not a measurement, and is
    refused at the gateway; they are not alarm limits, which are the rules'.
    ``resolution`` (None: not declared) is the smallest change the usual
    sensor of the metric tells apart from its own error, in the unit: the
    detectors do not measure a series' spread below it, so the wiggles of a
    sensor reading almost nothing are not taken for a spike.
    """

    unit: str
    counter: bool  # a cumulative register (meter reading), not an instant value
    accepted_units: frozenset[str]
    description: str
    low: float | None = None
    high: float | None = None
    resolution: float | None = None


def _info(
    unit: str,
    counter: bool,
    description: str,
    *aliases: str,
    low: float | None = None,
    high: float | None = None,
    resolution: float | None = None,
) -> MetricInfo:
    return MetricInfo(
        unit, counter, frozenset({unit, *aliases}), description, low, high, resolution
    )


# A percent of a transmitter's span may overshoot it a little: NAMUR NE 43,
# the 4-20 mA convention of process transmitters, carries measurements from
# 3.8 to 20.5 mA, that is -1.25 % to 103.125 % of the span, and keeps the
# signal beyond for the transmitter's own fault states.
SPAN_LOW_PCT = -1.25
SPAN_HIGH_PCT = 103.125
ABSOLUTE_ZERO_C = -273.15
# Gauge pressure is absolute minus atmospheric: a full vacuum reads minus the
# local atmosphere, never lower than the highest sea-level pressure recorded
# (108.4 kPa) allows; -0.11 MPa rounds that down.
GAUGE_VACUUM_MPA = -0.11

METRICS: dict[Metric, MetricInfo] = {
    # Negative active power is real: a site exporting (solar, a generator).
    Metric.POWER_KW: _info("kW", False, "active power"),
    Metric.ENERGY_KWH: _info("kWh", True, "active energy register", low=0.0),
    Metric.WATER_M3: _info("m3", True, "water volume register", "m³", low=0.0),
    Metric.GAS_M3: _info("m3", True, "gas volume register", "m³", low=0.0),
    Metric.TEMPERATURE_C: _info(
        "°C", False, "temperature", "degC", "C", "℃", low=ABSOLUTE_ZERO_C
    ),
    Metric.PRESSURE_MPA: _info("MPa", False, "gauge pressure", low=GAUGE_VACUUM_MPA),
    Metric.COMBUSTIBLE_GAS_LEL: _info(
        "%LEL",
        False,
        "combustible gas, percent of the lower explosive limit",
        # No upper bound: a gas past its lower explosive limit is a real
        # concentration (infrared detectors report it), and the most urgent
        # reading there is; it must reach the rules, not the dead letters.
        low=SPAN_LOW_PCT,
        # Fixed catalytic and infrared detectors display whole %LEL, and are
        # accurate to a few %LEL at best.
        resolution=1.0,
    ),
    # A part per million of a whole: 0 to 1,000,000. Fixed electrochemical
    # detectors (CO, H2S, NH3, Cl2) resolve 0.1 to 1 ppm and are accurate to
    # about 1 ppm or a few percent of the reading near zero.
    Metric.TOXIC_GAS_PPM: _info(
        "ppm", False, "toxic gas concentration", low=0.0, high=1e6, resolution=1.0
    ),
    Metric.LEVEL_PCT: _info(
        "%", False, "tank level", low=SPAN_LOW_PCT, high=SPAN_HIGH_PCT
    ),
}


def physical_range(metric: Metric) -> str:
    """The values a working sensor of ``metric`` can report, for messages.

    >>> physical_range(Metric.LEVEL_PCT), physical_range(Metric.TOXIC_GAS_PPM)
    ('-1.25 to 103.125 %', '0 to 1e+06 ppm')
    >>> physical_range(Metric.TEMPERATURE_C), physical_range(Metric.POWER_KW)
    ('at least -273.15 °C', 'any kW')
    """
    info = METRICS[metric]
    if info.low is not None and info.high is not None:
        return f"{info.low:g} to {info.high:g} {info.unit}"
    if info.low is not None:
        return f"at least {info.low:g} {info.unit}"
    if info.high is not None:
        return f"at most {info.high:g} {info.unit}"
    return f"any {info.unit}"


class PayloadError(ValueError):
    """A telemetry message that cannot be accepted.

    Attributes:
        field: dotted path of the offending field (``payload`` for the whole).
        reason: why, with the value received and what is allowed.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def json_shown(value: object) -> str:
    """A value received in JSON as a reason names it: null, true, false, an
    object, an array, or the string (quoted) or number itself, cut at 40
    characters.

    >>> [json_shown(v) for v in (None, True, False, {}, [1], "1", 1.5)]
    ['null', 'true', 'false', 'an object', 'an array', "'1'", '1.5']
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# Timestamps ----------------------------------------------------------------


def epoch_to_ns(number: float | int) -> int:
    """Epoch seconds, milliseconds, microseconds or nanoseconds -> nanoseconds.

    The unit is told apart by magnitude, which is unambiguous for any date
    between 1973 and 5138: seconds < 1e11 <= milliseconds < 1e14 <=
    microseconds < 1e17 <= nanoseconds.

    >>> epoch_to_ns(1_700_000_000), epoch_to_ns(1_700_000_000_000)
    (1700000000000000000, 1700000000000000000)
    """
    magnitude = abs(number)
    if isinstance(number, int):
        # Exact integer arithmetic: an integer epoch loses no nanosecond.
        for limit, factor in ((10**11, NS_PER_S), (10**14, 10**6), (10**17, 10**3)):
            if magnitude < limit:
                return number * factor
        return number
    if magnitude < 1e11:
        return round(number * NS_PER_S)
    if magnitude < 1e14:
        return round(number * 1_000_000)
    if magnitude < 1e17:
        return round(number * 1_000)
    return int(number)


def parse_timestamp(value: object) -> int:
    """A device timestamp (ISO 8601 with offset, or epoch s/ms/us/ns, as a
    number or a numeric string) -> epoch nanoseconds.

    Raises:
        ValueError: not a timestamp, no UTC offset, or outside 2000..2100.
    """
    if isinstance(value, str):
        ns = _text_to_ns(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        ns = _number_to_ns(value)
    else:
        raise ValueError(f"expected ISO 8601 or epoch time, got {json_shown(value)}")
    if ns < EARLIEST_NS:
        raise ValueError(f"timestamp {value!r} is before 2000-01-01")
    if ns > LATEST_NS:
        raise ValueError(f"timestamp {value!r} is after 2100-01-01")
    return ns


def _number_to_ns(number: float | int) -> int:
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"timestamp must be finite, got {number!r}")
    return epoch_to_ns(number)


def _text_to_ns(value: str) -> int:
    text = value.strip()
    if text.removeprefix("-").isdigit():
        return epoch_to_ns(int(text))  # exact: no detour through a float
    try:
        return _number_to_ns(float(text))
    except ValueError as exc:
        if "finite" in str(exc):
            raise
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected ISO 8601 or epoch time, got {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"ISO 8601 time {value!r} has no UTC offset")
    return (parsed - _EPOCH) // timedelta(microseconds=1) * 1000


# A number as a string is written as a JSON number would be; Python's own
# float() also takes "1_000", " 0x" forms aside, which no device means. The
# words for not-a-number and infinity pass here to be refused as not finite.
_NUMBER_TEXT = re.compile(
    r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|[+-]?(?:nan|inf|infinity)",
    re.IGNORECASE,
)


def _finite_number(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {json_shown(value)}")
    if isinstance(value, str):
        if not _NUMBER_TEXT.fullmatch(value.strip()):
            raise ValueError(f"expected a number, got {value!r}")
        value = float(value.strip())
    if not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {json_shown(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"value {value} is beyond the range of a float") from None
    if not math.isfinite(number):
        raise ValueError(f"value must be finite, got {value!r}")
    return number


FiniteFloat = Annotated[float, BeforeValidator(_finite_number)]


# MQTT payload -----------------------------------------------------------------


class MetricValue(BaseModel):
    """One measured quantity in a telemetry message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: Metric
    value: FiniteFloat
    unit: str

    @field_validator("unit")
    @classmethod
    def _unit_matches(cls, unit: str, info: ValidationInfo) -> str:
        metric = info.data.get("metric")
        if metric is None:
            return unit
        accepted = METRICS[metric].accepted_units
        if unit not in accepted:
            raise ValueError(
                f"unit {unit!r} is not valid for {metric.value}; "
                f"use {METRICS[metric].unit!r}"
            )
        return METRICS[metric].unit


# The largest integer the records carry (a signed 64-bit one): what Kafka
# consumers in other languages, InfluxDB and the device-state codec
# (msgpack) all hold. A device's seq of 2**64 once passed validation and
# crashed the score agent when its state was written.
INT64_MAX: Final = 2**63 - 1
Int64 = Annotated[int, Field(ge=-(2**63), le=INT64_MAX)]


class TelemetryPayload(BaseModel):
    """The JSON body of a telemetry message.

    Example::

        {"ts": "2026-12-03T10:00:00+08:00", "seq": 42,
         "metrics": [{"metric": "power_kw", "value": 12.5, "unit": "kW"}]}
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ts: Annotated[int, BeforeValidator(parse_timestamp)]
    # Strict: an integer only. Lax, pydantic took "seq": true as 1 and "1"
    # as 1, and forwarded both as readings.
    seq: int | None = Field(default=None, strict=True, ge=0, le=INT64_MAX)
    metrics: list[MetricValue] = Field(min_length=1, max_length=64)

    @field_validator("metrics")
    @classmethod
    def _one_value_per_metric(cls, metrics: list[MetricValue]) -> list[MetricValue]:
        require_unique((item.metric for item in metrics), "metric")
        return metrics


def require_unique(items: Iterable[Hashable], what: str) -> None:
    """Raise ValueError naming the first item that appears twice.

    >>> require_unique(["a", "b", "a"], "device id")
    Traceback (most recent call last):
    ...
    ValueError: device id a appears twice
    """
    seen: set[Hashable] = set()
    for item in items:
        if item in seen:
            raise ValueError(f"{what} {item} appears twice")
        seen.add(item)


def range_error(item: MetricValue) -> PayloadError | None:
    """Why no working sensor can report ``item``'s value (field
    ``metrics.<metric>``), None when one can.

    Checked after :func:`parse_payload`, one metric at a time, so that the
    metrics of a message in range are still taken: one faulty sensor of a
    multi-sensor device costs only its own values.

    >>> item = MetricValue(metric="level_pct", value=-50, unit="%")
    >>> error = range_error(item)
    >>> error.field
    'metrics.level_pct'
    >>> error.reason
    'value -50 is outside what a level_pct sensor can report (-1.25 to 103.125 %)'
    >>> range_error(item.model_copy(update={"value": 50.0})) is None
    True
    """
    info = METRICS[item.metric]
    if (info.low is None or item.value >= info.low) and (
        info.high is None or item.value <= info.high
    ):
        return None
    return PayloadError(
        f"metrics.{item.metric.value}",
        f"value {item.value:g} is outside what {_a(item.metric.value)} sensor can "
        f"report ({physical_range(item.metric)})",
    )


def _a(word: str) -> str:
    """``word`` after its indefinite article: an energy_kwh, a power_kw."""
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


@dataclass(frozen=True)
class TopicAddress:
    enterprise: str
    device: str
    kind: Literal["telemetry", "status"]


def parse_topic(topic: str, root: str) -> TopicAddress:
    """``<root>/<enterprise>/<device>/<kind>`` -> its parts.

    Raises:
        PayloadError: field ``topic``, when the topic does not have that shape.
    """
    prefix = root.rstrip("/") + "/"
    parts = topic[len(prefix) :].split("/") if topic.startswith(prefix) else []
    if len(parts) != 3 or parts[2] not in ("telemetry", "status"):
        raise PayloadError(
            "topic", f"{topic!r} is not {prefix}<enterprise>/<device>/telemetry|status"
        )
    enterprise, device, kind = parts
    for name, value in (("enterprise", enterprise), ("device", device)):
        if not _ID_RE.match(value):
            raise PayloadError("topic", f"{name} id {value!r} must match {ID_PATTERN}")
    return TopicAddress(enterprise, device, kind)  # type: ignore[arg-type]


def telemetry_topic(root: str, enterprise: str, device: str) -> str:
    return f"{root.rstrip('/')}/{enterprise}/{device}/telemetry"


def status_topic(root: str, enterprise: str, device: str) -> str:
    return f"{root.rstrip('/')}/{enterprise}/{device}/status"


ONLINE = b"online"
OFFLINE = b"offline"


def parse_status(raw: bytes) -> bytes | None:
    """Validate a status message body: ``online`` or ``offline``.

    Returns:
        The status, or None for an empty body (MQTT's way of clearing a
        retained message, which says nothing about the device).

    Raises:
        PayloadError: anything else, with field ``payload``.

    >>> parse_status(b"offline")
    b'offline'
    """
    if raw in (ONLINE, OFFLINE):
        return raw
    if not raw:
        return None
    shown = raw[:40].decode("utf-8", errors="replace")
    raise PayloadError(
        "payload", f"status must be 'online' or 'offline', got {shown!r}"
    )


class _KeyGivenTwice(Exception):
    """A JSON object of the body gives one key twice."""


class _TwiceObject(dict[str, Any]):
    """A JSON object that gives a key twice; ``key`` is the first such."""

    key: str


def _object_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) < len(pairs):
        raise _KeyGivenTwice
    return obj


def _object_marked(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    marked = _TwiceObject(obj)
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            marked.key = key
            break
        seen.add(key)
    return marked


# A JSON reader keeps the last of a key given twice, so a message saying
# "value": 1.2 and then "value": 99 would be taken as 99 without a word; the
# pydantic parser does so too and cannot be told otherwise. The standard
# library's decoder hands each object's pairs over before they become a dict.
_JSON_ONCE = json.JSONDecoder(object_pairs_hook=_object_once)
_JSON_MARKED = json.JSONDecoder(object_pairs_hook=_object_marked)


def _key_given_twice(text: str) -> str | None:
    """The dotted path of the first key a JSON object of ``text`` gives
    twice (``metrics.0.value``), None when there is none or ``text`` is not
    JSON the standard library reads (the validation that follows says why).

    >>> _key_given_twice('{"ts": 1, "metrics": [{"value": 1.2, "value": 99}]}')
    'metrics.0.value'
    >>> _key_given_twice('{"ts": 1}') is None
    True
    """
    try:
        _JSON_ONCE.decode(text)
    except _KeyGivenTwice:
        pass
    except (ValueError, RecursionError):
        # Not JSON (or too large a number, too deep a nesting for the
        # standard library): the pydantic parser words the reason.
        return None
    else:
        return None
    # Only a refused message is read a second time, to find the path.
    stack: list[tuple[object, list[str]]] = [(_JSON_MARKED.decode(text), [])]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _TwiceObject):
            return ".".join([*path, node.key])
        if isinstance(node, dict):
            items = list(node.items())
        elif isinstance(node, list):
            items = [(str(i), item) for i, item in enumerate(node)]
        else:
            continue
        stack.extend((item, [*path, key]) for key, item in reversed(items))
    return None  # not reached: the first reading found a key given twice


# What a pydantic type error expected, in JSON's words (pydantic says "a
# valid integer" and names no value).
_EXPECTED: Final = {
    "int_type": "an integer",
    "string_type": "a string",
    "list_type": "an array",
    "model_type": "an object",
}


def parse_payload(
    raw: bytes,
    *,
    now_ns: int,
    max_skew_s: float,
    max_bytes: int,
    max_age_s: float | None = None,
) -> TelemetryPayload:
    """Validate one telemetry message body.

    Raises:
        PayloadError: naming the first offending field and the reason.
    """
    if len(raw) > max_bytes:
        raise PayloadError("payload", f"{len(raw)} bytes exceeds the {max_bytes} limit")
    if raw.startswith(codecs.BOM_UTF8):
        # JSON sent over a network carries none (RFC 8259, section 8.1); the
        # parser would say only "expected value at line 1 column 1".
        raise PayloadError(
            "payload",
            "starts with a UTF-8 byte-order mark (EF BB BF); send the JSON without it",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("payload", f"not UTF-8 (byte {exc.start})") from None
    given_twice = _key_given_twice(text)
    if given_twice is not None:
        raise PayloadError(given_twice, "given twice")
    try:
        payload = TelemetryPayload.model_validate_json(text)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"]) or "payload"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "json_invalid":
            message = message.replace("Invalid JSON", "invalid JSON")
        elif err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "enum":
            got = json_shown(err.get("input"))
            message = f"unknown metric {got}; known: " + ", ".join(
                m.value for m in Metric
            )
        elif err["type"] in _EXPECTED:
            message = f"expected {_EXPECTED[err['type']]}, got "
            message += json_shown(err.get("input"))
        raise PayloadError(field, message) from None
    if payload.ts > now_ns + round(max_skew_s * NS_PER_S):
        ahead = (payload.ts - now_ns) / NS_PER_S
        raise PayloadError(
            "ts", f"{ahead:.0f}s in the future (allowed skew {max_skew_s:.0f}s)"
        )
    if max_age_s is not None and payload.ts < now_ns - round(max_age_s * NS_PER_S):
        age_days = (now_ns - payload.ts) / NS_PER_S / 86400
        raise PayloadError(
            "ts",
            f"{age_days:.1f} days old, older than the storage retention "
            f"({max_age_s / 86400:.1f} days)",
        )
    return payload


# Kafka records ----------------------------------------------------------------


class Measurement(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: Metric
    value: float


class ReadingRecord(BaseModel):
    """One accepted telemetry message, as produced to the readings topic.

    A reading is identified by (device, metric, ts_ns): storing the same one
    twice (a QoS 1 redelivery, a retained message) leaves one point.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    enterprise: str
    device: str
    ts_ns: Int64
    # Strict as the payload's: the gateway writes an integer or nothing.
    seq: Annotated[int, Field(strict=True, ge=0, le=INT64_MAX)] | None = None
    metrics: list[Measurement]
    received_ns: Int64
    retained: bool = False

    @property
    def key(self) -> bytes:
        return record_key(self.enterprise, self.device)


def record_key(enterprise: str, device: str) -> bytes:
    """Kafka key of a device: keeps each device's readings on one partition."""
    return f"{enterprise}/{device}".encode()


DEAD_LETTER_KEEP_BYTES = 512 * 1024
"""At most this much of a rejected payload is kept in its dead letter.

A payload rejected for its size can be far larger than a Kafka record may
be (1 MiB by default); its dead letter keeps the first bytes, the size and a
SHA-256 digest instead of failing to be produced. 512 KiB is about 700 KB in
base64, which leaves room for the rest of the record.
"""


class DeadLetter(BaseModel):
    """A message riskwatch could not accept, kept with the reason.

    ``payload_b64`` holds the payload, or its first ``DEAD_LETTER_KEEP_BYTES``
    when ``truncated``; ``payload_bytes`` and ``payload_sha256`` always
    describe the whole payload as it arrived.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    source: str  # e.g. "mqtt" or "kafka:<topic>"
    topic: str
    field: str
    reason: str
    payload_b64: str
    payload_bytes: int | None = None
    payload_sha256: str | None = None
    truncated: bool = False
    received_ns: int
    stage: str  # which component rejected it, e.g. "gateway"

    @classmethod
    def of(
        cls,
        *,
        source: str,
        topic: str,
        error: PayloadError,
        payload: bytes,
        received_ns: int,
        stage: str,
    ) -> DeadLetter:
        kept = payload[:DEAD_LETTER_KEEP_BYTES]
        return cls(
            source=source,
            topic=topic,
            field=error.field,
            reason=error.reason,
            payload_b64=base64.b64encode(kept).decode("ascii"),
            payload_bytes=len(payload),
            payload_sha256=hashlib.sha256(payload).hexdigest(),
            truncated=len(kept) < len(payload),
            received_ns=received_ns,
            stage=stage,
        )

    def payload(self) -> bytes:
        """The payload as kept (its first bytes when ``truncated``)."""
        return base64.b64decode(self.payload_b64)


def to_json_bytes(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()


# Scored readings: the input of the rules --------------------------------------


class Detector(StrEnum):
    """The name a detector gives its findings (:attr:`Finding.detector`).

    The single list of them: the detectors (stream_jobs/detection/engine.py)
    name their findings with these members, and rules name them in
    ``score.detectors`` and ``fired``, where ``riskwatch rules check``
    refuses any other name. A unit test scores series that make each of them
    report and checks that no other name comes out. What each finds:
    stream_jobs/detectors.py and docs/rules.md.

    A silence, a stale metric and a clock offset are observations of their
    own (``kind``, ``clock_offset_s``), not findings.
    """

    ROBUST_Z = "robust_z"
    STUCK = "stuck"
    EWMA = "ewma"
    RATE_OF_CHANGE = "rate_of_change"
    SEASONAL = "seasonal"
    DEVIATION = "deviation"
    LEVEL_SHIFT = "level_shift"
    GAP = "gap"
    COUNTER = "counter"
    MISSING = "missing"  # a value that is not a number; always scores 0


RULE_DETECTORS: Final = frozenset(Detector) - {Detector.MISSING}
"""The detectors a rule may name: those whose findings can score above 0.
A ``missing`` finding always scores 0, so no ``score`` or ``fired``
condition could ever hold on it."""


class Finding(BaseModel):
    """What one detector concluded about one reading, with its evidence."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    detector: str  # a Detector's value, e.g. "robust_z", "stuck"
    score: float = Field(ge=0.0, le=1.0)
    observed: float | None = None
    expected: float | None = None
    low: float | None = None  # band of normal values, where the detector has one
    high: float | None = None
    detail: str = ""


_FINDING_FIELDS = frozenset(Finding.model_fields)


def trusted_finding(
    detector: str,
    score: float,
    observed: float | None,
    expected: float | None,
    low: float | None,
    high: float | None,
    detail: str,
) -> Finding:
    """A :class:`Finding` of values the detectors computed, not validated.

    What ``Finding.model_construct`` builds, without its per-field alias and
    default lookups: the batch path builds a finding for up to a third of
    its readings, and model_construct was about an eighth of its time. A
    unit test checks the result equals the validated model, so a pydantic
    that lays out its models otherwise is caught there.
    """
    finding = Finding.__new__(Finding)
    values = {
        "detector": detector,
        "score": score,
        "observed": observed,
        "expected": expected,
        "low": low,
        "high": high,
        "detail": detail,
    }
    object.__setattr__(finding, "__dict__", values)
    object.__setattr__(finding, "__pydantic_fields_set__", set(_FINDING_FIELDS))
    object.__setattr__(finding, "__pydantic_extra__", None)
    object.__setattr__(finding, "__pydantic_private__", None)
    return finding


class Observation(BaseModel):
    """A reading after the stream jobs scored it, or a missing reading.

    ``value`` is what was scored: the measured value for instant metrics, the
    consumption rate per hour for counters (``rate`` is True), None when
    ``kind`` is ``silence`` (no data from the device for ``silent_s``
    seconds) or ``stale`` (no data for this metric for ``stale_s`` seconds of
    device time, while the device still sends others).

    ``clock_offset_s``: the device clock minus the gateway's, in seconds,
    measured over the device's last readings when they agree (see
    stream_jobs/clock.py); on one metric's readings per device, else None.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    enterprise: str
    device: str
    metric: Metric
    kind: Literal["reading", "silence", "stale"] = "reading"
    ts_ns: int
    value: float | None
    unit: str
    rate: bool = False
    score: float = Field(ge=0.0, le=1.0)
    learning: bool = False  # the device's baseline is still forming
    silent_s: float | None = None
    stale_s: float | None = None
    clock_offset_s: float | None = None
    findings: list[Finding] = Field(default_factory=list)
