"""Which weekday a date counts as for an enterprise's working hours.

Working hours are written per ISO weekday (1 = Monday). Under the official
calendar of public holidays and adjusted working days (the State Council's,
through the maintained ``chinesecalendar`` package), a public holiday that
falls on a weekday is a day off and counts as a Sunday, and a weekend day
that is worked in exchange (an adjusted working day) counts as a Monday. So
a Monday-to-Friday day shift does not run on National Day, runs on the
Saturday worked before the Spring Festival, and a shift listed on all seven
days runs on both.

A year the package has no data for (it covers the years the State Council
has announced) falls back to plain weekdays, with one warning per year.
"""

from __future__ import annotations

import logging
from datetime import date
from functools import cache
from typing import Literal

import chinese_calendar

log = logging.getLogger(__name__)

Calendar = Literal["official", "weekdays"]
"""``official``: public holidays and adjusted working days; ``weekdays``:
the plain weekday, every week alike."""

SUNDAY = 7
MONDAY = 1


def counts_as(day: date, calendar: Calendar) -> int:
    """The ISO weekday ``day`` counts as under ``calendar``.

    >>> counts_as(date(2026, 10, 1), "official")  # National Day, a Thursday
    7
    >>> counts_as(date(2026, 2, 14), "official")  # a Saturday worked
    1
    >>> counts_as(date(2026, 10, 1), "weekdays")
    4
    """
    weekday = day.isoweekday()
    if calendar == "weekdays" or not _covered(day.year):
        return weekday
    workday = chinese_calendar.is_workday(day)
    if weekday < 6 and not workday:
        return SUNDAY
    if weekday >= 6 and workday:
        return MONDAY
    return weekday


@cache
def _covered(year: int) -> bool:
    try:
        chinese_calendar.is_workday(date(year, 1, 1))
    except NotImplementedError:
        log.warning(
            "no official holiday calendar for year=%s; working hours follow "
            "plain weekdays",
            year,
        )
        return False
    return True
