"""The enterprise registry: who is supervised, where, by whom, under which orders.

A registry file (YAML) lists enterprises; ``riskwatch registry load FILE``
validates it and publishes one record per enterprise, keyed by its id, to the
compacted registry topic. Stream jobs read that topic as a global table, so an
edited registry takes effect without a restart. Names, descriptions and the
other free text refuse control characters (:mod:`riskwatch.text`).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from riskwatch.contracts import ID_PATTERN, Metric, require_unique
from riskwatch.errors import ConfigError
from riskwatch.text import FreeText, OneLine
from riskwatch.workdays import Calendar, counts_as


class Industry(StrEnum):
    HAZARDOUS_CHEMICALS = "hazardous_chemicals"
    SPECIAL_EQUIPMENT = "special_equipment"
    FOOD = "food"
    DRUG = "drug"
    MANUFACTURING = "manufacturing"


# How near a registered shift a moment may lie and still count as on shift:
# plants start up and run down over an hour or two (furnaces and vessels heat
# and cool, lines are filled and emptied), so the readings around a shift
# belong to the shift's pattern, not to the idle site's.
SHIFT_MARGIN = timedelta(hours=1)

# (ISO weekdays, start, end) of each shift: a hashable form of working hours.
_Hours = tuple[tuple[tuple[int, ...], time, time], ...]


@lru_cache(maxsize=8192)
def _shift_spans(
    hours: _Hours, zone: str, calendar: Calendar, day: date
) -> tuple[tuple[float, float], ...]:
    tz = ZoneInfo(zone)
    weekday = counts_as(day, calendar)
    spans = []
    for days, start, end in hours:
        if weekday not in days:
            continue
        begin = datetime.combine(day, start, tz).timestamp()
        end_day = day if start <= end else day + timedelta(days=1)
        finish = datetime.combine(end_day, end, tz).timestamp()
        if finish > begin:
            spans.append((begin, finish))
    return tuple(spans)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GridOfficer(_Model):
    id: str = Field(pattern=ID_PATTERN)
    name: OneLine = Field(min_length=1)
    phone: OneLine | None = None


class WorkingHours(_Model):
    """Hours of work on the given ISO weekdays (1 = Monday) in local time.

    ``end`` before ``start`` means a shift that runs past midnight.
    """

    days: list[int] = Field(min_length=1)
    start: time
    end: time

    @field_validator("days")
    @classmethod
    def _weekdays(cls, days: list[int]) -> list[int]:
        bad = [d for d in days if not 1 <= d <= 7]
        if bad:
            raise ValueError(f"weekdays are 1 (Monday) to 7 (Sunday), got {bad}")
        return sorted(set(days))

    def covers(self, local: datetime, calendar: Calendar = "weekdays") -> bool:
        """Whether the shift runs at ``local`` (the enterprise's local time),
        with weekdays counted under ``calendar`` (see riskwatch.workdays)."""
        clock = local.time().replace(tzinfo=None)
        today = counts_as(local.date(), calendar)
        if self.start <= self.end:
            return today in self.days and self.start <= clock < self.end
        # Overnight shift: the evening belongs to the day it started on, the
        # early morning to the day before.
        if clock >= self.start:
            return today in self.days
        yesterday = counts_as((local - timedelta(days=1)).date(), calendar)
        return clock < self.end and yesterday in self.days


class ShutdownOrder(_Model):
    """An order to stop production over a period (``end`` None: until lifted)."""

    order_id: str = Field(pattern=ID_PATTERN)
    start: AwareDatetime
    end: AwareDatetime | None = None
    reason: FreeText = Field(min_length=1)
    authority: OneLine = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> ShutdownOrder:
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end {self.end} is not after start {self.start}")
        return self

    def active_at(self, moment: datetime) -> bool:
        return self.start <= moment and (self.end is None or moment < self.end)


Tag = Annotated[str, Field(pattern=ID_PATTERN)]
"""A free label a rule can select on (``tags:``): what the registry knows of a
device or an enterprise beyond its fields, e.g. ``major-hazard-source``,
``boiler``, ``cold-chain``."""


class Device(_Model):
    id: str = Field(pattern=ID_PATTERN)
    metrics: list[Metric] = Field(min_length=1)
    description: FreeText = ""
    tags: list[Tag] = Field(default_factory=list)

    @field_validator("metrics")
    @classmethod
    def _unique_metrics(cls, metrics: list[Metric]) -> list[Metric]:
        require_unique(metrics, "metric")
        return metrics


class Enterprise(_Model):
    id: str = Field(pattern=ID_PATTERN)
    name: OneLine = Field(min_length=1)
    industry: Industry
    district: str = Field(pattern=ID_PATTERN)
    grid: str = Field(pattern=ID_PATTERN)
    risk_class: Literal["A", "B", "C", "D"]
    hazardous_chemicals: bool = False
    status: Literal["operating", "closed"] = "operating"
    licensed: bool = True
    timezone: str = "Asia/Shanghai"
    # Public holidays and adjusted working days move the working hours.
    calendar: Calendar = "official"
    working_hours: list[WorkingHours] = Field(default_factory=list)
    shutdown_orders: list[ShutdownOrder] = Field(default_factory=list)
    officer: GridOfficer
    # What the site draws when it does not produce (lighting, security,
    # monitoring, frost protection), per metric: kW, or a counter's use per
    # hour; recorded by the office, e.g. at a shutdown order's sealing.
    idle_load: dict[Metric, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=dict
    )
    tags: list[Tag] = Field(default_factory=list)
    devices: list[Device] = Field(default_factory=list)

    @field_validator("devices")
    @classmethod
    def _unique_devices(cls, devices: list[Device]) -> list[Device]:
        # Readings are keyed by enterprise and device: two entries with one
        # id would be one device with two descriptions.
        require_unique((d.id for d in devices), "device id")
        return devices

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r}") from None
        return zone

    def idle_of(self, metric: Metric) -> float | None:
        """The registered idle load for ``metric``; an energy register's use
        per hour is power, so it falls back to ``power_kw``'s."""
        idle = self.idle_load.get(metric)
        if idle is None and metric is Metric.ENERGY_KWH:
            idle = self.idle_load.get(Metric.POWER_KW)
        return idle

    def tags_of(self, device: str) -> set[str]:
        """The enterprise's tags and those of its device ``device`` (only the
        enterprise's if the registry does not list the device)."""
        own = next((d.tags for d in self.devices if d.id == device), [])
        return {*self.tags, *own}

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(ZoneInfo(self.timezone))

    def working_at(self, moment: datetime) -> bool:
        local = self.local(moment)
        return any(hours.covers(local, self.calendar) for hours in self.working_hours)

    def shutdown_order_at(self, moment: datetime) -> ShutdownOrder | None:
        return next((o for o in self.shutdown_orders if o.active_at(moment)), None)

    def local_date(self, moment: datetime) -> date:
        return self.local(moment).date()

    def shifts_starting(self, day: date) -> tuple[tuple[float, float], ...]:
        """The shifts that start on local date ``day`` (weekdays counted
        under the enterprise's calendar), as [begin, end) epoch seconds; an
        overnight shift ends the next day. :meth:`working_at` in spans."""
        hours = tuple((tuple(h.days), h.start, h.end) for h in self.working_hours)
        return _shift_spans(hours, self.timezone, self.calendar, day)

    def off_shift_at(self, moment: datetime, margin: timedelta = SHIFT_MARGIN) -> bool:
        """Whether no registered shift runs within ``margin`` (at most a day)
        of ``moment``: the site idles (a night, a rest day, a public holiday).
        False for an enterprise that registers no working hours (its pattern
        is unknown, so every moment counts as on shift)."""
        if not self.working_hours:
            return False
        t = moment.timestamp()
        reach = margin.total_seconds()
        today = self.local_date(moment)
        # Yesterday's overnight shift runs into today; the margin reaches
        # into tomorrow's first shift.
        for offset in (-1, 0, 1):
            for begin, end in self.shifts_starting(today + timedelta(days=offset)):
                if begin - reach <= t < end + reach:
                    return False
        return True


class Registry(_Model):
    enterprises: list[Enterprise] = Field(default_factory=list)

    @field_validator("enterprises")
    @classmethod
    def _unique_ids(cls, enterprises: list[Enterprise]) -> list[Enterprise]:
        require_unique((e.id for e in enterprises), "enterprise id")
        return enterprises

    def by_id(self) -> dict[str, Enterprise]:
        return {e.id: e for e in self.enterprises}


def load_registry(path: Path) -> Registry:
    """Read and validate a registry file.

    Raises:
        ConfigError: naming the file, the enterprise (index and id) and the
            field of every problem.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such registry file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        raise ConfigError(
            f"{path}: the file is empty; expected a mapping with 'enterprises'"
        )
    try:
        return Registry.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe_errors(path, data, exc)) from None


def _describe_errors(path: Path, data: object, exc: ValidationError) -> str:
    lines = [f"{path}: {exc.error_count()} problem(s)"]
    enterprises = data.get("enterprises") if isinstance(data, dict) else None
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        where = ".".join(str(p) for p in loc)
        if len(loc) >= 2 and loc[0] == "enterprises" and isinstance(loc[1], int):
            index = loc[1]
            ident = "?"
            if isinstance(enterprises, list) and index < len(enterprises):
                entry = enterprises[index]
                ident = str(entry.get("id", "?")) if isinstance(entry, dict) else "?"
            field = ".".join(str(p) for p in loc[2:]) or "(the entry)"
            where = f"enterprise #{index} ({ident}) field {field}"
        message = err["msg"].removeprefix("Value error, ")
        given = err.get("input")
        if isinstance(given, str | int | float) and not isinstance(given, bool):
            shown = repr(given) if len(repr(given)) <= 60 else repr(given)[:57] + "..."
            if shown not in message:
                message += f" (got {shown})"
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)
