"""The fixed binary layout of a series state, and conversions to and from it.

A series state is a small dict, ``{"v": 7, "last_ts": int | None, "x":
bytes}``: ``last_ts`` (ns since the epoch of the last reading learned, None
before the first) stays a plain field because the worker reads it to drop
redeliveries and sets it alone for a counter's first register reading;
``x`` is one record of :data:`RECORD_BYTES` bytes, little-endian:

* ``FLOATS`` float64 slots: the scalar statistics (:data:`SCALARS`, in that
  order), then the rolling window (a ring of ``WINDOW`` values: the window
  holds min(n, WINDOW) of them and reading n goes to slot n % WINDOW), the daily
  profiles ``hod`` and their spreads ``had`` (``PROFILE_KNOTS``: ``DAY_BINS``
  knots learned from readings on shift, then ``DAY_BINS`` learned from
  readings off shift), the weekday offsets ``dow`` (7), the per-bin share
  of zero rates ``pz`` (``DAY_BINS``; zeros for a series that is not a
  counter, which reads the same as no share at all) and the usual step of
  the residual from the profile per knot ``hds`` (``PROFILE_KNOTS``, on shift
  then off shift; 0 where not learned yet);
* ``PROFILE_KNOTS`` uint8 counts of readings per knot ``hn`` (capped at 99),
  on shift then off shift.

Counts (``n``, ``run``, ...) are float64 holding whole numbers (exact far
beyond any series' length); ``run_start`` is an int64 (ns) in its float64
slot's bytes; an absent value (``t0``, ``dt``, ``rq``, ``last_value``) is NaN
(a learned value is always finite) and an absent ``run_start`` is
:data:`NO_TS`. The record is a multiple of 8 bytes long (aligned float64
views of a batch of records).

States stored by version 6 (the record without ``hds``) are converted by
:func:`upgrade_v6`, those stored by version 5 (without ``hds``, the level
under the profile ``ls`` and the off-shift profile) by :func:`upgrade`, those
stored by version 4 and earlier (the JSON dict of every statistic) by
:func:`pack_legacy`, on their next reading (:func:`current`).
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
import numpy.typing as npt

STATE_VERSION: Final = 7
# The last version whose state was the JSON dict of every statistic.
LEGACY_VERSION: Final = 4
# The binary record without ``ls`` and the off-shift profile.
V5: Final = 5
# The binary record without the knots' usual steps ``hds``.
V6: Final = 6

WINDOW: Final = 96
DAY_BINS: Final = 48
WEEK_DAYS: Final = 7
# Two daily profiles: on shift (knots 0 to DAY_BINS - 1), off shift (the rest).
PROFILE_KNOTS: Final = 2 * DAY_BINS

SCALARS: Final = (
    "n",
    "run",
    "run_start",
    "last_value",
    "t0",
    "dt",
    "em",
    "ev",
    "dm",
    "lv",
    "ca",
    "lvv",
    "gq",
    "sv",
    "cp",
    "cn",
    "ps",
    "gn",
    "pk",
    "pa",
    "lr",
    "rq",
    "ls",
)
SLOT: Final = {name: i for i, name in enumerate(SCALARS)}
INT_SLOTS: Final = frozenset({"run_start"})
OPTIONAL: Final = frozenset({"last_value", "t0", "dt", "rq"})

W0: Final = len(SCALARS)
HOD0: Final = W0 + WINDOW
HAD0: Final = HOD0 + PROFILE_KNOTS
DOW0: Final = HAD0 + PROFILE_KNOTS
PZ0: Final = DOW0 + WEEK_DAYS
HDS0: Final = PZ0 + DAY_BINS
FLOATS: Final = HDS0 + PROFILE_KNOTS
FLOAT_BYTES: Final = 8 * FLOATS
RECORD_BYTES: Final = FLOAT_BYTES + PROFILE_KNOTS

# Version 6's record: this one without ``hds``.
V6_FLOAT_BYTES: Final = 8 * HDS0
V6_RECORD_BYTES: Final = V6_FLOAT_BYTES + PROFILE_KNOTS

# Version 5's record: the same scalars but ``ls`` (the last), one profile.
_V5_SCALARS: Final = len(SCALARS) - 1
_V5_HOD0: Final = _V5_SCALARS + WINDOW
_V5_FLOATS: Final = _V5_HOD0 + 2 * DAY_BINS + WEEK_DAYS + DAY_BINS
V5_RECORD_BYTES: Final = 8 * _V5_FLOATS + DAY_BINS
NO_TS: Final = np.iinfo(np.int64).min

if RECORD_BYTES % 8:  # pragma: no cover - a layout edit that breaks the views
    raise AssertionError(f"RECORD_BYTES {RECORD_BYTES} must be a multiple of 8")

SeriesState = dict[str, Any]


def _fresh_record() -> bytes:
    floats = np.zeros(FLOATS, dtype="<f8")
    for name in OPTIONAL:
        floats[SLOT[name]] = math.nan
    floats[SLOT["run_start"] : SLOT["run_start"] + 1].view("<i8")[0] = NO_TS
    return floats.tobytes() + bytes(PROFILE_KNOTS)


FRESH_RECORD: Final = _fresh_record()


def new_state() -> SeriesState:
    """The state of a series that has seen nothing yet."""
    return {"v": STATE_VERSION, "last_ts": None, "x": FRESH_RECORD}


def is_current(state: SeriesState) -> bool:
    return state.get("v") == STATE_VERSION and isinstance(state.get("x"), bytes)


def upgrade(state: SeriesState) -> SeriesState:
    """A version 5 state in the current layout: the level under the profile
    ``ls`` starts at the level ``lv``, the on-shift profile is version 5's
    daily profile (learned from every reading) and the off-shift profile is
    empty (learned from the next readings off shift).

    Raises:
        ValueError: a record of the wrong length (not a state this code wrote).
    """
    record = _stored_record(state, V5_RECORD_BYTES, V5)
    old = np.frombuffer(record, dtype="<f8", count=_V5_FLOATS)
    floats = np.zeros(FLOATS, dtype="<f8")
    floats[:_V5_SCALARS] = old[:_V5_SCALARS]
    floats[SLOT["ls"]] = old[SLOT["lv"]]
    floats[W0 : W0 + WINDOW] = old[_V5_SCALARS:_V5_HOD0]
    hod, had = _V5_HOD0, _V5_HOD0 + DAY_BINS
    floats[HOD0 : HOD0 + DAY_BINS] = old[hod : hod + DAY_BINS]
    floats[HAD0 : HAD0 + DAY_BINS] = old[had : had + DAY_BINS]
    floats[DOW0 : PZ0 + DAY_BINS] = old[had + DAY_BINS :]
    counts = np.zeros(PROFILE_KNOTS, dtype=np.uint8)
    counts[:DAY_BINS] = np.frombuffer(record, dtype=np.uint8, offset=8 * _V5_FLOATS)
    return {
        "v": STATE_VERSION,
        "last_ts": state["last_ts"],
        "x": floats.tobytes() + counts.tobytes(),
    }


def upgrade_v6(state: SeriesState) -> SeriesState:
    """A version 6 state in the current layout: every statistic kept, the
    knots' usual steps not learned yet (0: the overall usual step judges
    until they are).

    Raises:
        ValueError: a record of the wrong length (not a state this code wrote).
    """
    record = _stored_record(state, V6_RECORD_BYTES, V6)
    steps = bytes(8 * PROFILE_KNOTS)
    return {
        "v": STATE_VERSION,
        "last_ts": state["last_ts"],
        "x": record[:V6_FLOAT_BYTES] + steps + record[V6_FLOAT_BYTES:],
    }


def _stored_record(state: SeriesState, size: int, version: int) -> bytes:
    record: bytes = state["x"]
    if len(record) != size:
        raise ValueError(
            f"state field x: {len(record)} bytes, not {size} (version {version})"
        )
    return record


def legacy_defaults() -> dict[str, Any]:
    """Version 4's state of a fresh series: what older states lacked."""
    return {
        "v": LEGACY_VERSION,
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
        "dow": [0.0] * WEEK_DAYS,
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


def pack_legacy(state: SeriesState) -> SeriesState:
    """A state stored by version 4 or earlier (a dict of every statistic;
    earlier versions lack some, which take their fresh values) in the
    current layout, with the same meaning.

    Raises:
        ValueError: a field of the wrong length (not a state this code wrote).
    """
    s = {**legacy_defaults(), **state}
    s["ls"] = s["lv"]  # as upgrade() starts version 5's
    floats = np.zeros(FLOATS, dtype="<f8")
    for name in SCALARS:
        if name in INT_SLOTS:
            continue
        value = s.get(name)
        floats[SLOT[name]] = math.nan if value is None else float(value)
    start = s["run_start"]
    floats[SLOT["run_start"] : SLOT["run_start"] + 1].view("<i8")[0] = (
        NO_TS if start is None else int(start)
    )
    window = [float(v) for v in s["window"]][-WINDOW:]
    n = int(s["n"])
    for j, value in enumerate(window):  # the last one in slot (n - 1) % WINDOW
        floats[W0 + (n - len(window) + j) % WINDOW] = value
    pz = s["pz"] or [0.0] * DAY_BINS
    for offset, name, values, size in (
        (HOD0, "hod", s["hod"], DAY_BINS),
        (HAD0, "had", s["had"], DAY_BINS),
        (DOW0, "dow", s["dow"], WEEK_DAYS),
        (PZ0, "pz", pz, DAY_BINS),
    ):
        if len(values) != size:
            raise ValueError(f"state field {name}: {len(values)} values, not {size}")
        floats[offset : offset + size] = values
    if len(s["hn"]) != DAY_BINS:
        raise ValueError(f"state field hn: {len(s['hn'])} values, not {DAY_BINS}")
    counts = np.zeros(PROFILE_KNOTS, dtype=np.uint8)
    counts[:DAY_BINS] = np.asarray(s["hn"], dtype=np.int64).clip(0, 255)
    return {
        "v": STATE_VERSION,
        "last_ts": s["last_ts"],
        "x": floats.tobytes() + counts.tobytes(),
    }


def current(state: SeriesState) -> SeriesState:
    """``state`` in the current layout (converted if an older version)."""
    if is_current(state):
        return state
    if state.get("v") == V6 and isinstance(state.get("x"), bytes):
        return upgrade_v6(state)
    if state.get("v") == V5 and isinstance(state.get("x"), bytes):
        return upgrade(state)
    return pack_legacy(state)


def fields(state: SeriesState) -> dict[str, Any]:
    """Every statistic of ``state`` by name, as version 4 kept them: for
    tests, debugging and the docs (the window oldest first; None where a
    value is absent; ``pz`` empty where it was never learned)."""
    s = current(state)
    record = s["x"]
    floats = np.frombuffer(record, dtype="<f8", count=FLOATS)
    out: dict[str, Any] = {"v": s["v"], "last_ts": s["last_ts"]}
    for name in SCALARS:
        value = float(floats[SLOT[name]])
        out[name] = None if name in OPTIONAL and math.isnan(value) else value
    start = int(floats[SLOT["run_start"] : SLOT["run_start"] + 1].view("<i8")[0])
    out["run_start"] = None if start == NO_TS else start
    for name in ("n", "run", "gn", "pa"):
        out[name] = int(out[name])
    n = out["n"]
    ring = floats[W0 : W0 + WINDOW].tolist()
    head = n % WINDOW
    out["window"] = ring[:n] if n < WINDOW else ring[head:] + ring[:head]
    out["hod"] = floats[HOD0 : HOD0 + DAY_BINS].tolist()
    out["had"] = floats[HAD0 : HAD0 + DAY_BINS].tolist()
    out["hod_off"] = floats[HOD0 + DAY_BINS : HOD0 + PROFILE_KNOTS].tolist()
    out["had_off"] = floats[HAD0 + DAY_BINS : HAD0 + PROFILE_KNOTS].tolist()
    out["dow"] = floats[DOW0 : DOW0 + WEEK_DAYS].tolist()
    pz = floats[PZ0 : PZ0 + DAY_BINS].tolist()
    out["pz"] = pz if any(pz) else []
    counts = np.frombuffer(record, dtype=np.uint8, offset=FLOAT_BYTES).tolist()
    out["hn"] = counts[:DAY_BINS]
    out["hn_off"] = counts[DAY_BINS:]
    out["hds"] = floats[HDS0 : HDS0 + DAY_BINS].tolist()
    out["hds_off"] = floats[HDS0 + DAY_BINS : FLOATS].tolist()
    return out


def gather(records: list[bytes]) -> npt.NDArray[np.uint8]:
    """Records side by side: a writable (B, RECORD_BYTES) array."""
    joined = np.frombuffer(bytearray().join(records), dtype=np.uint8)
    return joined.reshape(len(records), RECORD_BYTES)


def scatter(block: npt.NDArray[np.uint8]) -> list[bytes]:
    """The records of a (B, RECORD_BYTES) array, one bytes object each."""
    data = block.tobytes()
    return [data[i : i + RECORD_BYTES] for i in range(0, len(data), RECORD_BYTES)]
