"""The off-shift daily profile: nights and rest days judged by a profile of
their own, learned once, so a weekend is neither a week-long anomaly nor the
end of a site's baseline (``off_shift`` of :func:`score_batch`)."""

from datetime import UTC, datetime

import numpy as np

from riskwatch.contracts import Metric
from stream_jobs.detectors import new_state, score_value

MONDAY_NS = int(datetime(2026, 11, 2, tzinfo=UTC).timestamp()) * 1_000_000_000
STEP_S = 300
DAY_S = 86_400
PER_DAY = DAY_S // STEP_S
SATURDAY_2 = 12 * PER_DAY  # the first reading of the second Saturday


def plant(days, seed=0):
    """A site that works Monday to Friday 08:00-17:00 (UTC) at 100 kW and
    idles at 10 kW, its load ramping over half an hour, with 1 kW of noise;
    off shift where no shift lies within an hour, as the registry says."""
    t = np.arange(days * PER_DAY) * STEP_S
    hour = (t % DAY_S) / 3600
    workday = (t // DAY_S) % 7 < 5
    working = workday & (hour >= 8) & (hour < 17)
    load = np.convolve(working.astype(float), np.ones(6) / 6, mode="same")
    values = 10 + 90 * load + np.random.default_rng(seed).normal(0, 1, t.size)
    off = ~(workday & (hour >= 7) & (hour < 18))
    return values, t, off


def run(values, t, off):
    series = new_state()
    results = []
    for value, seconds, rest in zip(values, t, off, strict=True):
        ts = MONDAY_NS + int(seconds) * 1_000_000_000
        series, scored = score_value(series, Metric.POWER_KW, float(value), ts, rest)
        results.append(scored)
    return results


def deviation(result):
    return max(
        (f.score for f in result.findings if f.detector == "deviation"), default=0.0
    )


def longest_run(flags):
    best = run_length = 0
    for flag in flags:
        run_length = run_length + 1 if flag else 0
        best = max(best, run_length)
    return best


def test_nothing_is_reported_on_a_clean_working_week_after_the_learning_week():
    # Week 1 is the learning period (the off-shift profile learns its first
    # Saturday and Sunday); week 2, weekend included, reports nothing: no
    # combined score, and no deviation held for 15 minutes (four readings,
    # what slow-drift and consumption-jump ask for).
    values, t, off = plant(14)
    results = run(values, t, off)[7 * PER_DAY :]
    assert max(r.score for r in results) == 0.0
    assert longest_run(deviation(r) >= 0.5 for r in results) < 4


def test_without_the_off_shift_profile_the_weekend_is_reported():
    # The same readings, every one taken as on shift: the one daily profile
    # has learned five workdays and last weekend, and expects Saturday's
    # idle morning to ramp up as a workday's does: deviations held for 15
    # minutes (slow-drift warnings), and on Monday a combined score the
    # spike-or-drop rule takes (0.5) at the start-up.
    values, t, off = plant(14)
    results = run(values, t, np.zeros_like(off))
    saturday = results[SATURDAY_2 : SATURDAY_2 + PER_DAY]
    assert longest_run(deviation(r) >= 0.5 for r in saturday) >= 4
    monday = results[7 * PER_DAY : 8 * PER_DAY]
    assert max(r.score for r in monday) >= 0.5


def test_a_level_shift_on_a_saturday_is_flagged_from_its_first_reading():
    # Saturday of week 2, 10:00-12:00: the idle 10 kW reads 40 (30 of the
    # off-shift profile's spreads of about 1 kW). The deviation scores in
    # full from the first reading and holds: slow-drift's 15 minutes pass
    # at the fourth reading.
    values, t, off = plant(14)
    start = SATURDAY_2 + 10 * 12
    values[start : start + 24] += 30.0
    results = run(values, t, off)
    assert deviation(results[start - 1]) == 0.0
    assert [deviation(r) for r in results[start : start + 4]] == [1.0] * 4
    assert longest_run(deviation(r) >= 0.5 for r in results[start : start + 24]) >= 20
    first = results[start].findings
    expected = next(f.expected for f in first if f.detector == "deviation")
    assert abs(expected - 10.0) < 2.0


def test_the_off_shift_profile_is_not_used_before_its_knots_are_learned():
    # The first Saturday is learned, not judged: no deviation from a profile
    # (the seasonal detectors wait, as in a series' first two days), though
    # the workday profile would call the whole day a drop.
    values, t, off = plant(7)
    results = run(values, t, off)
    first_saturday = results[5 * PER_DAY + 8 * 12 : 5 * PER_DAY + 17 * 12]
    assert all(deviation(r) == 0.0 for r in first_saturday[:6])
    # Nor the first Sunday: its daytime knots hold one day (Saturday's), and
    # a day seen once may have been anything.
    first_sunday = results[6 * PER_DAY + 8 * 12 : 6 * PER_DAY + 17 * 12]
    assert all(deviation(r) == 0.0 for r in first_sunday)


def six_day_plant(weeks, busy_sundays=()):
    """The plant of :func:`plant` working Monday to Saturday; it rests on
    Sundays, except those of the weeks in ``busy_sundays`` (0 the first),
    which it works as a workday (production the registry does not know of:
    off shift)."""
    values, t, off = plant(7 * weeks)
    day = t // DAY_S
    for week in range(weeks):
        for weekday in (5, 6):
            if weekday == 6 and week not in busy_sundays:
                continue
            same = day == 7 * week + weekday
            monday = day == 7 * week
            values[same] = values[monday]
            if weekday == 5:
                hour = (t[same] % DAY_S) / 3600
                off[same] = ~((hour >= 7) & (hour < 18))
    return values, t, off


def test_a_rest_day_seen_once_does_not_judge_the_next():
    # The first Sunday the site produced (a workday's load, off shift); the
    # second it rests. Its daytime knots hold that one Sunday, so they do
    # not judge: no deviation held for 15 minutes, no combined score.
    values, t, off = six_day_plant(2, busy_sundays=(0,))
    sunday = run(values, t, off)[13 * PER_DAY : 14 * PER_DAY]
    assert longest_run(deviation(r) >= 0.5 for r in sunday) < 4
    assert max(r.score for r in sunday) < 0.5


def test_a_knot_the_next_day_disagrees_with_starts_again():
    # A busy first Sunday, then three that rest: the second disagrees with
    # the first and starts the knots again, the third agrees with it, and
    # the fourth Sunday is judged by a resting Sunday's profile: its idle
    # hours report nothing, and a shift of 30 kW there (10:00 to 12:00) is
    # a deviation from its first reading. Averaged with the busy Sunday,
    # the profile would expect 55 kW at noon.
    values, t, off = six_day_plant(4, busy_sundays=(0,))
    start = (3 * 7 + 6) * PER_DAY + 10 * 12
    quiet = run(values, t, off)[(3 * 7 + 6) * PER_DAY : start]
    assert longest_run(deviation(r) >= 0.5 for r in quiet) < 4
    values[start : start + 24] += 30.0
    shifted = run(values, t, off)[start : start + 24]
    assert all(deviation(r) == 1.0 for r in shifted[:4])


def test_a_spike_after_the_first_two_days_is_reported():
    # The first two days have no daily profile: every start-up and stop is
    # a surprise, and the series' usual evidence climbs with them. Once the
    # profile judges (day 2), a 20 kW spike at noon (20 noise sigmas, a
    # fifth of the load) is reported as the spike-or-drop rule asks (0.5),
    # and the noon readings around it are not.
    for day in (2, 3, 4):
        values, t, off = plant(day + 1)
        noon = day * PER_DAY + 12 * 12
        values[noon] += 20.0
        results = run(values, t, off)
        assert results[noon].score >= 0.5, day
        assert max(r.score for r in results[noon - 12 : noon]) == 0.0, day
