"""The benchmark's detectors: NAB-safe names, and riskwatchNovelty as the
larger of its two parts."""

import numpy as np

from stream_jobs.bench.candidates import CANDIDATES, DEFAULT_CANDIDATES, build
from stream_jobs.detection.ensemble import Ensemble

T0_NS = 1_396_310_400 * 10**9
STEP_NS = 300 * 10**9


def series(n=2500, seed=8):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = 20 + 5 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 0.5, n)
    values[1800:1830] = values[1799]  # a flat spell
    values[2200] += 30  # a spike
    return [float(v) for v in values]


def scores(name, values):
    detector = build(name)
    return [detector.score(v, T0_NS + k * STEP_NS) for k, v in enumerate(values)]


def test_names_carry_no_underscore_and_the_novelty_detectors_run_by_default():
    # NAB's scorer takes a result file's detector name up to its first "_".
    assert all("_" not in name for name in CANDIDATES)
    assert {"novelty", "riskwatchNovelty", "daylong", "riskwatchDaylong"} <= set(
        DEFAULT_CANDIDATES
    )
    assert set(DEFAULT_CANDIDATES) <= set(CANDIDATES)


def test_riskwatch_novelty_scores_the_larger_of_riskwatch_and_novelty():
    values = series()
    combined = scores("riskwatchNovelty", values)
    riskwatch = scores("riskwatch", values)
    novelty = scores("novelty", values)
    assert combined == [max(a, b) for a, b in zip(riskwatch, novelty, strict=True)]
    assert all(0.0 <= s <= 1.0 for s in combined)
    # Each part contributes on this series: the spike is flagged by one of
    # them at its reading, and novelty adds scores riskwatch does not give.
    assert combined[2200] > 0.0
    assert any(b > a for a, b in zip(riskwatch, novelty, strict=True))


def test_riskwatch_novelty_is_causal():
    values = series()
    assert (
        scores("riskwatchNovelty", values[:2000])
        == scores("riskwatchNovelty", values)[:2000]
    )


def test_riskwatch_daylong_scores_the_larger_of_riskwatch_and_daylong():
    values = series(4000)
    combined = scores("riskwatchDaylong", values)
    riskwatch = scores("riskwatch", values)
    daylong = scores("daylong", values)
    assert combined == [max(a, b) for a, b in zip(riskwatch, daylong, strict=True)]
    assert all(0.0 <= s <= 1.0 for s in combined)
    assert daylong[2200] > 0.0  # the spike, at its reading


def test_resonance_daylong_is_the_ensemble_detector_and_resonance_sees_the_spike():
    values = series(4000)
    ensemble = Ensemble()
    assert scores("resonanceDaylong", values) == [ensemble.score(v) for v in values]
    resonance = scores("resonance", values)
    assert all(0.0 <= s <= 1.0 for s in resonance)
    # The spike at 2200 lies in the 7-reading point 2198..2204 (2205 % 7 ==
    # 0): resonance reports it at the end of that point.
    assert max(resonance[:2204]) == 0.0
    assert resonance[2204] > 0.0
