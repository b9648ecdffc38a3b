"""Shared pieces of the rule models: the strict base model and durations."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Far beyond any rule's need (100 years) and well inside what a timedelta holds.
_MAX_DURATION_S = 100 * 365 * 86400.0


class StrictModel(BaseModel):
    """Frozen, and unknown keys are an error that lists the allowed ones."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, str_strip_whitespace=True
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:  # noqa: ANN401 - raw YAML of any shape
        if isinstance(data, dict):
            allowed = {field.alias or name for name, field in cls.model_fields.items()}
            allowed |= set(cls.model_fields)
            unknown = sorted(str(key) for key in data if key not in allowed)
            if unknown:
                names = ", ".join(repr(key) for key in unknown)
                known = ", ".join(
                    sorted(field.alias or n for n, field in cls.model_fields.items())
                )
                raise ValueError(f"unknown key(s) {names}; allowed: {known}")
        return data


def parse_duration(value: object) -> timedelta:
    """A duration from a rule file -> :class:`~datetime.timedelta`.

    Accepts a number of seconds (``90``) or a string of number-unit pairs with
    the units ``ms``, ``s``, ``m``, ``h``, ``d`` (``"90s"``, ``"5m"``,
    ``"1h30m"``).

    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)

    Raises:
        ValueError: anything else, or a negative or non-finite number.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or value is None:
        raise ValueError(f"expected a duration such as 90 or '5m', got {value!r}")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if not text or _DURATION_RE.sub("", text):
            raise ValueError(
                f"expected a duration such as '90s', '5m' or '1h30m' "
                f"(units ms, s, m, h, d), got {value!r}"
            )
        seconds = sum(
            float(number) * _UNIT_S[unit] for number, unit in _DURATION_RE.findall(text)
        )
    else:
        raise ValueError(f"expected a duration, got {type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be finite and not negative, got {value!r}")
    if seconds > _MAX_DURATION_S:
        raise ValueError(
            f"a duration may be at most {_MAX_DURATION_S / 86400:g} days, got {value!r}"
        )
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def to_ns(duration: timedelta) -> int:
    """A duration in integer nanoseconds (exact for whole microseconds)."""
    return (
        duration.days * 86_400_000_000 + duration.seconds * 1_000_000
    ) * 1000 + duration.microseconds * 1000


def format_duration(duration: timedelta) -> str:
    """The shortest of ``45s``, ``5m``, ``1h30m`` style for a duration.

    >>> format_duration(parse_duration(5400))
    '1h30m'
    """
    seconds = duration.total_seconds()
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        whole = int(seconds // size)
        if whole:
            parts.append(f"{whole}{unit}")
            seconds -= whole * size
    if seconds:
        parts.append(f"{seconds:g}s")
    return "".join(parts)
