"""Reading a CSV time series: ``timestamp`` and one value column."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from riskwatch.errors import RiskwatchError

__all__ = ["BenchInputError", "Series", "read_series", "timestamp_ns"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BenchInputError(RiskwatchError):
    """A benchmark input file is missing, unreadable or malformed."""


def timestamp_ns(text: str) -> int:
    """``YYYY-MM-DD HH:MM:SS`` (naive: UTC; an offset is honoured) -> epoch ns.

    Exact integer arithmetic, no detour through a float.

    >>> timestamp_ns("1970-01-01 00:00:01")
    1000000000

    Raises:
        ValueError: not an ISO 8601 time.
    """
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


@dataclass(frozen=True)
class Series:
    """A series as read: the timestamp and value texts as they appear in the
    file (written back unchanged), and their parsed forms."""

    path: Path
    column: str
    times: tuple[str, ...]
    ts_ns: tuple[int, ...]
    texts: tuple[str, ...]
    values: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.times)


def read_series(path: Path, column: str | None = None) -> Series:
    """Read ``timestamp`` and a value column of a CSV file.

    Args:
        path: the CSV file; its header names the columns.
        column: the value column; None means ``value`` if there is one, else
            the only column besides ``timestamp``.

    Raises:
        BenchInputError: the file cannot be read, a column is missing, or a
            row holds a bad timestamp or a value that is not a finite
            number; the message names the line. Rows stay in file order,
            even where a timestamp steps back (a few NAB files do, around
            clock changes): consumers decide what that means.
    """
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchInputError(f"{path}: cannot read: {exc}") from None
    if not rows:
        raise BenchInputError(f"{path}: empty file, expected a header row")
    header = [name.strip() for name in rows[0]]
    chosen = _value_column(path, header, column)
    t_at, v_at = header.index("timestamp"), header.index(chosen)
    times: list[str] = []
    stamps: list[int] = []
    texts: list[str] = []
    values: list[float] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            ts, text = row[t_at], row[v_at]
        except IndexError:
            raise BenchInputError(f"{path}:{line}: too few columns") from None
        try:
            stamp = timestamp_ns(ts)
        except ValueError:
            raise BenchInputError(
                f"{path}:{line}: timestamp {ts!r} is not YYYY-MM-DD HH:MM:SS"
            ) from None
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise BenchInputError(
                f"{path}:{line}: {chosen} {text!r} is not a finite number"
            )
        times.append(ts)
        stamps.append(stamp)
        texts.append(text)
        values.append(value)
    if not times:
        raise BenchInputError(f"{path}: no data rows")
    return Series(
        path, chosen, tuple(times), tuple(stamps), tuple(texts), tuple(values)
    )


def _value_column(path: Path, header: list[str], column: str | None) -> str:
    if "timestamp" not in header:
        raise BenchInputError(
            f"{path}: no column 'timestamp'; columns: {', '.join(header)}"
        )
    if column is not None:
        if column not in header:
            raise BenchInputError(
                f"{path}: no column {column!r}; columns: {', '.join(header)}"
            )
        return column
    if "value" in header:
        return "value"
    others = [name for name in header if name != "timestamp"]
    if len(others) != 1:
        raise BenchInputError(
            f"{path}: choose the value column with --column; columns: "
            f"{', '.join(header)}"
        )
    return others[0]
