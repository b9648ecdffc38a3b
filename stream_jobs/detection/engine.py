"""One step of every detector on one reading; see :mod:`stream_jobs.detectors`."""

from __future__ import annotations

import math
from typing import Any

from riskwatch.contracts import Finding, Metric

# Series ------------------------------------------------------------------------
LEARNING_READINGS = 30
# Detectors that need more than a median to be meaningful start later.
WARMUP_READINGS = 60

# robust_z ----------------------------------------------------------------------
WINDOW = 96
# 1.4826 * MAD estimates the standard deviation of normal data.
MAD_TO_SIGMA = 1.4826
# z below Z_QUIET scores 0; at Z_FULL it scores 1 (linear between). The shipped
# spike-or-drop rule relies on this scale (score 0.5 = z 8).
Z_QUIET = 4.0
Z_FULL = 12.0

# stuck -------------------------------------------------------------------------
STUCK_MIN_READINGS = 12
STUCK_MIN_S = 1800.0
# Metrics that legitimately sit at exactly zero for hours (no load, clean air,
# no consumption: counters are scored as rates), where a flat zero says
# nothing about the sensor.
ZERO_IS_NORMAL = frozenset(
    {
        Metric.POWER_KW,
        Metric.COMBUSTIBLE_GAS_LEL,
        Metric.TOXIC_GAS_PPM,
        Metric.ENERGY_KWH,
        Metric.WATER_M3,
        Metric.GAS_M3,
    }
)
COUNTERS = frozenset({Metric.ENERGY_KWH, Metric.WATER_M3, Metric.GAS_M3})
# A frozen register is reported where this hour usually counts at least this
# many times the smallest rate the meter has shown.
FROZEN_BUSY = 3.0
# Readings of a daily bin before its share of zero rates is trusted.
ZERO_SHARE_MIN = 3

# ewma / rate / level shift -------------------------------------------------------
EWMA_ALPHA = 0.05  # about 20 readings of memory
RATE_ALPHA = 0.05
# mean |step| * sqrt(pi/2) estimates the standard deviation of normal steps.
ABS_TO_SIGMA = 1.2533
CUSUM_K = 0.5  # allowance, in standard deviations (detects shifts >= 1 sd)
CUSUM_H = 20.0  # decision interval, in standard deviations
CUSUM_CLIP = 4.0  # one reading moves the sum by at most this much

# seasonal ----------------------------------------------------------------------
DAY_S = 86_400
LEVEL_TAU_S = DAY_S  # the level under the profile: about a day of memory
DAY_BINS = 48
BIN_SD_FLOOR = 0.5
SEASONAL_EXPLAINS = 0.5  # residual variance below this share of the total
PROFILE_ALPHA = 0.1  # per reading of the bin: about a day of that hour's readings
SEASON_VAR_ALPHA = 0.01
DAILY_AFTER_S = 2 * DAY_S
WEEKLY_AFTER_S = 14 * DAY_S
WEEK_ALPHA = 0.01

# deviation -----------------------------------------------------------------------
# A reading's distance from the daily profile, scored from a lower z than the
# seasonal finding's so that rules can ask for a moderate deviation that
# lasts (`for`): a consumption level shift or a slow drift is a few spreads
# off for an hour, not a spike. Score 0.5 = z 2.5. Not part of the combined
# score (it would count twice with ``seasonal``).
DEVIATION_QUIET = 1.5
DEVIATION_FULL = 3.5
NOT_COMBINED = frozenset({"deviation"})

# gap ---------------------------------------------------------------------------
GAP_FACTOR = 4.0  # a silence this many usual intervals long is a gap
INTERVAL_ALPHA = 0.05

# combination ---------------------------------------------------------------------
EVIDENCE_MIN = 10  # evidence samples before the combined score may move
# Evidence is each detector's statistic in units of its own alarm level (1 =
# where its finding starts to score); the reading's evidence is the largest.
EVIDENCE_QUANTILE = 0.995  # the series' "usual worst" evidence
QUANTILE_RATE = 0.02  # step of the quantile estimate, in log-evidence units
EVIDENCE_CAP = 50.0  # a floored spread can give any z; beyond this, all alike
# The reading's evidence must reach one detector's own alarm level (1) before
# the combined score may move: the running quantile alone makes a calm
# series' small wiggles look unusual (NAB subset: 46.78 -> 47.42 standard;
# bench scenarios unchanged).
EVIDENCE_GATE = 1.0
G_QUIET = 0.0  # log-evidence this far above the usual worst scores 0 ...
G_FULL = 0.25  # ... and this far (28 % more evidence), 1
REFRACTORY_READINGS = 200  # quiet after a reported peak, unless it escalates
CORROBORATION = 3.0  # detectors that must agree for a full score
SAME_ALPHA = 0.01  # memory of how often the value repeats (~100 readings)

# The layout of the state; bump it when keys are added so stored states are
# completed on their next reading.
STATE_VERSION = 4

_TINY = 1e-9


def new_state() -> dict[str, Any]:
    return {
        "v": STATE_VERSION,
        "n": 0,
        "last_ts": None,
        "window": [],
        "run": 0,
        "run_start": None,
        "last_value": None,
        "t0": None,
        "dt": None,
        "em": 0.0,
        "ev": 0.0,
        "dm": 0.0,
        "lv": 0.0,
        "ca": 0.0,
        "lvv": 0.0,
        "gq": 0.0,
        "hod": [0.0] * DAY_BINS,
        "hn": [0] * DAY_BINS,
        "had": [0.0] * DAY_BINS,
        "dow": [0.0] * 7,
        "sv": 0.0,
        "cp": 0.0,
        "cn": 0.0,
        "ps": 0.0,
        "pz": [],
        "gn": 0,
        "pk": 0.0,
        "pa": 0,
        "lr": 0.0,
        "rq": None,
    }


def _q(value: float) -> float:
    """``value`` rounded to 7 significant digits, to keep the state small."""
    return float(f"{value:.7g}")


def _ramp(x: float, quiet: float, full: float) -> float:
    return min(1.0, max(0.0, (x - quiet) / (full - quiet)))


def _run_score(run: int, share: float) -> float:
    """How unusual ``run`` readings in a row of something that happens to a
    share ``share`` of the readings are: 0 up to odds of 1 in 100, 1 from 1
    in a million (the share floored at 1 in 1000)."""
    surprise = -run * math.log10(min(max(share, 1e-3), 1.0))
    return _ramp(surprise, 2.0, 6.0)


def _median_mad(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    median = ordered[mid] if n % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])
    dev = sorted(abs(v - median) for v in ordered)
    mad = dev[mid] if n % 2 else 0.5 * (dev[mid - 1] + dev[mid])
    return median, mad


def step(  # noqa: PLR0912, PLR0915 - one pass over every detector, in order
    state: dict[str, Any], metric: Metric, value: float, ts_ns: int
) -> tuple[dict[str, Any], float, bool, list[Finding]]:
    # States stored by an older version (in the worker's changelog table)
    # gain the keys they lack instead of failing the reading.
    s = dict(state) if state.get("v") == STATE_VERSION else {**new_state(), **state}
    s["v"] = STATE_VERSION
    n = s["n"]
    learning = n < LEARNING_READINGS
    findings: list[Finding] = []
    if not math.isfinite(value):
        findings.append(Finding(detector="missing", score=0.0, detail="not a number"))
        return s, 0.0, learning, findings

    evidence = 0.0
    ts_s = ts_ns / 1e9
    dt_s = None if s["last_ts"] is None else (ts_ns - s["last_ts"]) / 1e9
    warm = n >= WARMUP_READINGS

    # robust_z ---------------------------------------------------------------
    z_robust = 0.0
    level_evidence = 0.0
    outranked: set[str] = set()
    band = (value, value)
    if not learning and s["window"]:
        median, mad = _median_mad(s["window"])
        # A flat window has MAD 0; keep a floor so a tiny wiggle after a calm
        # spell is not an infinite z.
        sigma = max(MAD_TO_SIGMA * mad, 1e-3 * abs(median), 1e-6)
        z_robust = abs(value - median) / sigma
        band = (median - Z_QUIET * sigma, median + Z_QUIET * sigma)
        score = _ramp(z_robust, Z_QUIET, Z_FULL)
        level_evidence = z_robust / Z_QUIET
        if score > 0:
            findings.append(
                Finding(
                    detector="robust_z",
                    score=score,
                    observed=value,
                    expected=median,
                    low=band[0],
                    high=band[1],
                    detail=f"{'above' if value > median else 'below'} the rolling "
                    f"median by {z_robust:.1f} robust standard deviations",
                )
            )

    # stuck ------------------------------------------------------------------
    last = s["last_value"]
    same = last is not None and abs(value - last) <= 1e-9 * max(1.0, abs(value))
    run = s["run"] + 1 if same else 1
    run_start = s["run_start"] if same else ts_ns
    if (
        not learning
        and run >= STUCK_MIN_READINGS
        and (ts_ns - run_start) / 1e9 >= STUCK_MIN_S
        and not (value == 0.0 and metric in ZERO_IS_NORMAL)
        # A counter's steady rate is a steady process; its frozen register
        # is found below, against the daily profile.
        and metric not in COUNTERS
    ):
        # How unusual a run this long is here: a series that often repeats its
        # value (coarse resolution, idle counters) earns a weak score.
        score = _run_score(run, s["ps"])
        findings.append(
            Finding(
                detector="stuck",
                score=score,
                observed=value,
                detail=f"the same value for {run} readings over "
                f"{(ts_ns - run_start) / 60e9:.0f} min",
            )
        )
        evidence = max(evidence, 3.0 * score)
    if run < STUCK_MIN_READINGS and last is not None:
        s["ps"] += max(1.0 / n, SAME_ALPHA) * ((1.0 if same else 0.0) - s["ps"])
    zero_run = (
        metric in COUNTERS
        and value == 0.0
        and not learning
        and run >= STUCK_MIN_READINGS
        and (ts_ns - run_start) / 1e9 >= STUCK_MIN_S
    )

    # ewma -------------------------------------------------------------------
    sd = math.sqrt(s["ev"])
    if warm and sd > _TINY:
        z = abs(value - s["em"]) / sd
        score = _ramp(z, 2 * Z_QUIET, 2 * Z_FULL)
        if score > 0:
            findings.append(
                Finding(
                    detector="ewma",
                    score=score,
                    observed=value,
                    expected=s["em"],
                    low=s["em"] - 2 * Z_QUIET * sd,
                    high=s["em"] + 2 * Z_QUIET * sd,
                    detail=f"{z:.1f} EWMA standard deviations from the EWMA mean",
                )
            )

    # rate_of_change ---------------------------------------------------------
    # Once the daily profile is learned, a step is measured against the
    # profile's own step (a square wave's daily edge is no surprise).
    age = 0.0 if s["t0"] is None else ts_s - s["t0"]
    daily = age >= DAILY_AFTER_S
    # The daily profile is piecewise linear between DAY_BINS knots (at the
    # middle of each half hour): smooth cycles fit without a staircase error.
    pos = (ts_s % DAY_S) / (DAY_S / DAY_BINS) - 0.5
    k0 = math.floor(pos)
    w1 = pos - k0
    k0 %= DAY_BINS
    k1 = (k0 + 1) % DAY_BINS
    near = k1 if w1 >= 0.5 else k0
    hour = int(ts_s // 3600) % 24
    day = int(ts_s // DAY_S + 3) % 7  # 1970-01-01 was a Thursday: 0 = Monday
    weekly = age >= WEEKLY_AFTER_S
    profile = (1.0 - w1) * s["hod"][k0] + w1 * s["hod"][k1]
    season_expected = s["lv"] + profile + (s["dow"][day] if weekly else 0.0)
    expected = season_expected if daily else s["lv"]
    resid = value - expected
    step_s = dt_s if dt_s is not None and dt_s > 0 else 0.0
    step_sd = ABS_TO_SIGMA * s["dm"]
    diff = 0.0 if last is None else (resid - s["lr"] if daily else value - last)
    if warm and step_sd > _TINY:
        z = abs(diff) / step_sd
        evidence = max(evidence, z / (2 * Z_QUIET))
        score = _ramp(z, 2 * Z_QUIET, 2 * Z_FULL)
        if score > 0:
            findings.append(
                Finding(
                    detector="rate_of_change",
                    score=score,
                    observed=diff,
                    expected=0.0,
                    low=-2 * Z_QUIET * step_sd,
                    high=2 * Z_QUIET * step_sd,
                    detail=f"a step of {z:.1f} usual steps since the last reading",
                )
            )

    # seasonal ---------------------------------------------------------------
    # The spread differs by time of day (a busy hour is noisier than a
    # quiet one): a per-bin mean absolute residual, floored by a share of
    # the overall one so a bin that happened to be calm is not hair-trigger.
    seas_sd = max(ABS_TO_SIGMA * s["had"][near], BIN_SD_FLOOR * math.sqrt(s["sv"]))
    u = 0.0
    z_seasonal = 0.0
    if daily and warm and seas_sd > _TINY:
        z = z_seasonal = abs(resid) / seas_sd
        u = (resid - s["ca"]) / seas_sd
        # Where the daily profile explains most of the variance, it is the
        # better model: a value it expects is no surprise, however far it is
        # from the last hours' median.
        if s["sv"] < SEASONAL_EXPLAINS * s["lvv"]:
            level_evidence = min(level_evidence, z / Z_QUIET)
            outranked = {"robust_z", "ewma"}
        else:
            level_evidence = max(level_evidence, z / Z_QUIET)
        # ``deviation`` is the same distance scored from a lower z, for rules
        # that ask for a moderate deviation that lasts.
        where = f"the usual value at {hour:02d}h{' on this weekday' if weekly else ''}"
        for name, quiet, full in (
            ("seasonal", Z_QUIET, Z_FULL),
            ("deviation", DEVIATION_QUIET, DEVIATION_FULL),
        ):
            score = _ramp(z, quiet, full)
            if score > 0:
                findings.append(
                    Finding(
                        detector=name,
                        score=score,
                        observed=value,
                        expected=expected,
                        low=expected - quiet * seas_sd,
                        high=expected + quiet * seas_sd,
                        detail=f"{z:.1f} standard deviations "
                        f"{'above' if resid > 0 else 'below'} {where}",
                    )
                )
    elif warm and s["lvv"] > _TINY:
        u = (value - s["lv"] - s["ca"]) / math.sqrt(s["lvv"])

    # frozen register -----------------------------------------------------------
    # A meter register that stops moving reads as zero consumption. A run of
    # zeros is a frozen register where the meter's rate is seldom exactly
    # zero at this time of day (``pz``, the share of zero rates per daily
    # bin, counters only), or where this hour usually counts several times
    # the smallest rate the meter has shown (``rq``, its idle use). A site
    # idle at zero every night learns that in its first night and is not
    # reported; once a bin has been seen for a few weeks a frozen register
    # moves its share by a few percent a day, so it stays reported.
    quantum = s["rq"]
    zero_share = s["pz"][near] if s["pz"] else 0.0
    if zero_run:
        # A bin seen too seldom says nothing yet about zeros at this hour.
        known = s["hn"][near] >= ZERO_SHARE_MIN
        score = _run_score(run, zero_share) if known else 0.0
        if quantum is not None and daily and warm:
            busy = _ramp(season_expected / quantum, FROZEN_BUSY, 4 * FROZEN_BUSY)
            score = max(score, busy)
        if score > 0:
            findings.append(
                Finding(
                    detector="stuck",
                    score=score,
                    observed=value,
                    expected=season_expected,
                    detail=f"the register has not moved for {run} readings over "
                    f"{(ts_ns - run_start) / 60e9:.0f} min; at {hour:02d}h its "
                    f"rate is zero in {100 * zero_share:.1f} % of readings and "
                    f"usually {season_expected:.3g} per hour",
                )
            )
            evidence = max(evidence, 3.0 * score)

    evidence = max(evidence, level_evidence)

    # level_shift (two-sided CUSUM on the standardised residual) ---------------
    cp = s["cp"]
    cn = s["cn"]
    reanchor = False
    if warm and u:
        uc = max(-CUSUM_CLIP, min(CUSUM_CLIP, u))
        cp = max(0.0, cp + uc - CUSUM_K)
        cn = max(0.0, cn - uc - CUSUM_K)
        c = max(cp, cn)
        evidence = max(evidence, c / CUSUM_H)
        score = _ramp(c, CUSUM_H / 2, CUSUM_H)
        if score > 0:
            findings.append(
                Finding(
                    detector="level_shift",
                    score=score,
                    observed=value,
                    expected=expected,
                    detail=f"a sustained shift {'up' if cp > cn else 'down'}: "
                    f"CUSUM {c:.1f} (decision interval {CUSUM_H:g})",
                )
            )
        if c >= CUSUM_H:
            # A shift confirmed: the CUSUM measures from the new level on.
            # It is an offset of its own, fading as the level catches up, so
            # the level under the daily profile is not jolted.
            cp = cn = 0.0
            reanchor = True

    # gap --------------------------------------------------------------------
    if warm and dt_s is not None and s["dt"]:
        ratio = dt_s / s["dt"]
        if ratio >= GAP_FACTOR:
            score = _ramp(math.log(ratio), math.log(GAP_FACTOR), math.log(100.0))
            findings.append(
                Finding(
                    detector="gap",
                    score=score,
                    observed=dt_s,
                    expected=s["dt"],
                    detail=f"{dt_s:.0f} s since the previous reading, "
                    f"{ratio:.1f} times the usual interval",
                )
            )

    # counter ----------------------------------------------------------------
    if metric in COUNTERS and value < 0:
        findings.append(
            Finding(
                detector="counter",
                score=1.0,
                observed=value,
                expected=0.0,
                low=0.0,
                detail="a negative consumption rate: the meter went backwards",
            )
        )

    # combination ------------------------------------------------------------
    combined = 0.0
    g = math.log1p(min(evidence, EVIDENCE_CAP))
    if not learning and evidence > 0:
        gated = evidence >= EVIDENCE_GATE
        # A combined score needs an explanation: some detector must fire.
        # (Not one of the detectors the daily profile outranks.)
        outranked |= NOT_COMBINED
        if (
            gated
            and s["gn"] >= EVIDENCE_MIN
            and any(f.score > 0 and f.detector not in outranked for f in findings)
        ):
            raw = _ramp(g - s["gq"], G_QUIET, G_FULL)
            # Corroboration: one detector alone (of those warmed up) earns a
            # share of the score; independent views agreeing earn all of it.
            fired = {f.detector for f in findings if f.score > 0} - outranked
            raw *= min(1.0, len(fired) / (CORROBORATION if warm else 1.0))
            if any(f.detector == "counter" for f in findings):
                raw = 1.0
            # Refractory: after reporting a peak, stay quiet for
            # REFRACTORY_READINGS readings unless the evidence escalates.
            if raw > s["pk"]:
                combined = raw
                s["pk"] = raw
                s["pa"] = 0
        # The usual evidence: a running estimate of the EVIDENCE_QUANTILE of
        # log(1 + evidence) by stochastic approximation (each reading moves
        # it up by QUANTILE_RATE * q or down by QUANTILE_RATE * (1 - q), so
        # it settles where a share 1 - q of the readings lies above it). It
        # starts at the largest of the first EVIDENCE_MIN values.
        if s["gn"] < EVIDENCE_MIN:
            s["gq"] = max(s["gq"], g)
        else:
            hit = EVIDENCE_QUANTILE - (1.0 if g <= s["gq"] else 0.0)
            s["gq"] += QUANTILE_RATE * hit
        s["gn"] = min(s["gn"] + 1, 10_000)
    s["pa"] += 1
    if s["pa"] >= REFRACTORY_READINGS:
        s["pk"] = 0.0

    # learn ------------------------------------------------------------------
    flagged = combined > 0 or z_robust > Z_FULL or z_seasonal > Z_FULL
    x = value
    if flagged and warm:
        x = min(max(value, band[0]), band[1])
    # The profile is clipped to its own band: the rolling median's band is
    # too narrow for a series that swings through its daily cycle.
    xs = value
    if flagged and daily and warm:
        xs = min(max(value, expected - Z_QUIET * seas_sd), expected + Z_QUIET * seas_sd)
    if any(f.detector == "stuck" and f.score > 0 for f in findings):
        # A stuck sensor or frozen register says nothing about the process:
        # learning its value would teach the profile to expect it tomorrow,
        # and the next normal day would read as a jump.
        x, xs = s["em"], season_expected
    if s["t0"] is None:
        s["t0"] = ts_s
    if dt_s is not None and dt_s > 0:
        if s["dt"] is None:
            s["dt"] = dt_s
        elif dt_s < GAP_FACTOR * s["dt"]:
            s["dt"] += INTERVAL_ALPHA * (dt_s - s["dt"])
    if n == 0:
        s["em"] = x
        s["lv"] = x
    else:
        a = max(1.0 / (n + 1), EWMA_ALPHA)
        d = x - s["em"]
        s["em"] += a * d
        s["ev"] = (1 - a) * (s["ev"] + a * d * d)
        if last is not None:
            ar = max(1.0 / n, RATE_ALPHA)
            s["dm"] += ar * (
                min(abs(diff), 4 * step_sd if warm else abs(diff)) - s["dm"]
            )
        al = max(1.0 / (n + 1), min(1.0, step_s / LEVEL_TAU_S))
        d = x - s["lv"]
        s["lv"] += al * d
        s["lvv"] = (1 - al) * (s["lvv"] + al * d * d)
        s["ca"] -= al * s["ca"]
    hod = list(s["hod"])
    if reanchor:
        s["ca"] = value - expected
        s["em"] = value
    hn = list(s["hn"])
    hn[near] = min(hn[near] + 1, 99)
    ap = max(1.0 / hn[near], PROFILE_ALPHA)
    err = xs - s["lv"] - profile
    hod[k0] = _q(hod[k0] + ap * (1.0 - w1) * err)
    hod[k1] = _q(hod[k1] + ap * w1 * err)
    s["hod"] = hod
    s["hn"] = hn
    if metric in COUNTERS:
        pz = list(s["pz"]) or [0.0] * DAY_BINS
        az = max(1.0 / hn[near], SAME_ALPHA)
        pz[near] = _q(pz[near] + az * (float(value == 0.0) - pz[near]))
        s["pz"] = pz
    # The residual statistics are learned from the first reading, so that
    # the profile's spread is known by the time the profile is used.
    r = xs - season_expected
    av = max(1.0 / (n + 1), SEASON_VAR_ALPHA)
    s["sv"] = (1 - av) * s["sv"] + av * r * r
    had = list(s["had"])
    dev = min(abs(r), 4.0 * seas_sd) if daily else abs(r)
    had[near] = _q(had[near] + ap * (dev - had[near]))
    s["had"] = had
    if daily:
        dow = list(s["dow"])
        r_day = r + (s["dow"][day] if weekly else 0.0)
        dow[day] = _q(dow[day] + WEEK_ALPHA * (r_day - dow[day]))
        s["dow"] = dow

    if metric in COUNTERS and value > 0 and (s["rq"] is None or value < s["rq"]):
        s["rq"] = _q(value)
    s.update(
        n=n + 1,
        last_ts=ts_ns,
        window=[*s["window"], _q(value)][-WINDOW:],
        run=run,
        run_start=run_start,
        last_value=value,
        cp=cp,
        cn=cn,
        # The residual from the daily profile, learned or not: the first
        # step measured against the profile must not compare it with a
        # residual from the plain level (a jump of the whole daily swing).
        lr=value - season_expected,
    )
    return s, combined, learning, findings
