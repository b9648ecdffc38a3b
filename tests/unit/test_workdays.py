"""Working hours under the official calendar of public holidays and adjusted
working days."""

import logging
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import TypeAdapter

from alert_rules.conditions import Condition, Context
from riskwatch.contracts import NS_PER_S, Metric, Observation
from riskwatch.registry import Enterprise
from riskwatch.workdays import _covered, counts_as
from tests.unit.conftest import enterprise_entry

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _works(**overrides):
    hours = [{"days": [1, 2, 3, 4, 5], "start": "08:00", "end": "17:00"}]
    return Enterprise.model_validate(
        enterprise_entry(**{"working_hours": hours, **overrides})
    )


def _at(day, hour):
    return datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI).astimezone(UTC)


# National Day 2026-10-01 is a Thursday; 2026-10-10 is a Saturday worked in
# exchange; 2026-12-04 is an ordinary Friday (the State Council's 2026
# schedule, as the calendar package carries it).
HOLIDAY, WORKED_SATURDAY, ORDINARY = (
    date(2026, 10, 1),
    date(2026, 10, 10),
    date(2026, 12, 4),
)


@pytest.mark.parametrize(
    ("day", "official", "weekdays"),
    [(HOLIDAY, 7, 4), (WORKED_SATURDAY, 1, 6), (ORDINARY, 5, 5)],
)
def test_a_day_counts_as_its_calendar_weekday(day, official, weekdays):
    assert counts_as(day, "official") == official
    assert counts_as(day, "weekdays") == weekdays


def test_a_weekday_shift_stops_on_a_public_holiday_and_runs_on_a_worked_saturday():
    works = _works()
    assert works.working_at(_at(ORDINARY, 10))
    assert not works.working_at(_at(HOLIDAY, 10))
    assert works.working_at(_at(WORKED_SATURDAY, 10))
    # The same shifts on plain weekdays, for an enterprise that keeps them.
    plain = _works(calendar="weekdays")
    assert plain.working_at(_at(HOLIDAY, 10))
    assert not plain.working_at(_at(WORKED_SATURDAY, 10))


def test_a_shift_on_all_seven_days_runs_on_holidays():
    plant = _works(
        working_hours=[
            {"days": [1, 2, 3, 4, 5, 6, 7], "start": "22:00", "end": "06:00"}
        ]
    )
    assert plant.working_at(_at(HOLIDAY, 23))
    assert plant.working_at(_at(HOLIDAY, 3))  # the night shift of 30 September


def test_an_overnight_shift_started_before_a_holiday_runs_into_it():
    # Mon-Fri nights: the shift of Wednesday 30 September runs into the
    # holiday morning; the holiday evening starts no shift.
    nights = _works(
        working_hours=[{"days": [1, 2, 3, 4, 5], "start": "22:00", "end": "06:00"}]
    )
    assert nights.working_at(_at(HOLIDAY, 3))
    assert not nights.working_at(_at(HOLIDAY, 23))


def _minute(day, hour, minute):
    return datetime(
        day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI
    ).astimezone(UTC)


def test_off_shift_is_no_shift_within_the_margin_of_an_hour():
    # Mon-Fri 08:00-17:00: on shift from 07:00 to 18:00 of a workday.
    works = _works()
    friday = ORDINARY
    saturday = date(2026, 12, 5)
    assert works.off_shift_at(_minute(friday, 6, 55))
    assert not works.off_shift_at(_minute(friday, 7, 0))
    assert not works.off_shift_at(_minute(friday, 12, 0))
    assert not works.off_shift_at(_minute(friday, 17, 59))
    assert works.off_shift_at(_minute(friday, 18, 0))
    assert works.off_shift_at(_minute(saturday, 7, 30))
    assert works.off_shift_at(_minute(saturday, 12, 0))
    # The calendar moves the shifts: off on National Day, on when a
    # Saturday is worked in exchange.
    assert works.off_shift_at(_at(HOLIDAY, 12))
    assert not works.off_shift_at(_at(WORKED_SATURDAY, 12))


def test_off_shift_follows_an_overnight_shift_into_the_next_day():
    # Mon-Fri nights 22:00-06:00: Friday's runs into Saturday morning, and
    # its hour of run-down with it; Sunday night starts no shift.
    nights = _works(
        working_hours=[{"days": [1, 2, 3, 4, 5], "start": "22:00", "end": "06:00"}]
    )
    saturday, sunday = date(2026, 12, 5), date(2026, 12, 6)
    assert not nights.off_shift_at(_minute(saturday, 3, 0))
    assert not nights.off_shift_at(_minute(saturday, 6, 59))
    assert nights.off_shift_at(_minute(saturday, 7, 0))
    assert nights.off_shift_at(_minute(sunday, 20, 59))
    assert nights.off_shift_at(_minute(sunday, 23, 0))
    # Monday's shift starts at 22:00: on from 21:00.
    assert not nights.off_shift_at(_minute(date(2026, 12, 7), 21, 0))


def test_a_site_without_working_hours_is_never_off_shift():
    assert not _works(working_hours=[]).off_shift_at(_at(HOLIDAY, 3))


def test_a_year_without_official_data_falls_back_to_weekdays_with_a_warning(caplog):
    _covered.cache_clear()
    far = date(2099, 10, 1)  # a Thursday
    with caplog.at_level(logging.WARNING):
        assert counts_as(far, "official") == far.isoweekday()
        assert counts_as(far, "official") == far.isoweekday()
    warned = [r for r in caplog.records if "year=2099" in r.getMessage()]
    assert len(warned) == 1


def test_an_unknown_calendar_is_refused():
    with pytest.raises(ValueError, match="calendar"):
        _works(calendar="lunar")


def _power_at(moment: datetime):
    return Observation(
        enterprise="E001",
        device="EM-01",
        metric=Metric.POWER_KW,
        ts_ns=int(moment.timestamp()) * NS_PER_S,
        value=80.0,
        unit="kW",
        score=0.0,
    )


@pytest.mark.parametrize(
    ("day", "hour", "working"),
    [
        (ORDINARY, 10, True),
        (ORDINARY, 20, False),
        (HOLIDAY, 10, False),
        (WORKED_SATURDAY, 10, True),
        (date(2026, 12, 5), 10, False),  # an ordinary Saturday
    ],
)
def test_a_rule_context_follows_the_official_calendar(day, hour, working):
    ctx = Context.of(_power_at(_at(day, hour)), _works())
    inside = TypeAdapter(Condition).validate_python({"context": "working_hours"})
    outside = TypeAdapter(Condition).validate_python(
        {"context": "outside_working_hours"}
    )
    assert (inside.test(ctx), outside.test(ctx)) == (working, not working)


def test_no_registered_hours_is_no_evidence_either_way():
    ctx = Context.of(_power_at(_at(ORDINARY, 10)), _works(working_hours=[]))
    for name in ("working_hours", "outside_working_hours"):
        condition = TypeAdapter(Condition).validate_python({"context": name})
        assert condition.test(ctx) is None
