"""Which warnings a silence covers, and when: device, enterprise, rule; its
window on the wall clock; the choice among several."""

from datetime import timedelta

import pytest
from pydantic import ValidationError

from alert_rules.silences import Silence, SilenceSubject, covering
from tests.unit.conftest import T0


def _silence(kind, ident, *, until=T0 + timedelta(hours=1), **extra):
    return Silence.model_validate(
        {
            "id": extra.pop("id", f"sil-{kind}"),
            "subject": {"kind": kind, "id": ident},
            "reason": "calibration",
            "until": until,
            "by": "officer-li",
            "at": T0,
            **extra,
        }
    )


@pytest.mark.parametrize(
    ("kind", "ident", "covered"),
    [
        ("device", "HC001/GD-101", True),
        ("device", "HC001/GD-102", False),
        ("device", "HC002/GD-101", False),
        ("enterprise", "HC001", True),
        ("enterprise", "HC002", False),
        ("rule", "combustible-gas-red", True),
        ("rule", "combustible-gas-orange", False),
    ],
)
def test_a_silence_covers_its_device_enterprise_or_rule(kind, ident, covered):
    silence = _silence(kind, ident)
    assert silence.covers("HC001", "GD-101", "combustible-gas-red") is covered


@pytest.mark.parametrize(
    ("kind", "ident"),
    [
        # A device id alone is not enough: the same id may exist elsewhere.
        ("device", "GD-101"),
        ("device", "HC001/x/y"),
        ("enterprise", "HC00\uff11"),  # a full-width digit
        ("rule", "no spaces allowed"),
    ],
)
def test_a_silence_that_could_never_match_is_refused(kind, ident):
    with pytest.raises(ValueError, match=f"an? {kind} silence names"):
        _silence(kind, ident)


def test_a_silence_holds_from_its_start_until_its_end_exclusive():
    silence = _silence("rule", "r", starts=T0 + timedelta(minutes=10))
    assert not silence.active(T0)
    assert silence.active(T0 + timedelta(minutes=10))
    assert silence.active(T0 + timedelta(minutes=59))
    assert not silence.active(T0 + timedelta(hours=1))
    assert _silence("rule", "r").active(T0)  # no start: from when it was recorded


def test_covering_ignores_ended_and_other_silences_and_picks_the_longest():
    ended = _silence("device", "HC001/GD-101", id="a", until=T0 + timedelta(seconds=1))
    short = _silence("enterprise", "HC001", id="b", until=T0 + timedelta(hours=1))
    long = _silence("rule", "gas", id="c", until=T0 + timedelta(hours=3))
    other = _silence("enterprise", "HC002", id="d", until=T0 + timedelta(hours=9))
    found = {"enterprise": "HC001", "device": "GD-101", "rule": "gas"}
    now = T0 + timedelta(minutes=30)
    assert covering([ended, short, long, other], **found, now=now) == long
    assert covering([long, short], **found, now=now) == long
    assert covering([ended, other], **found, now=now) is None
    assert covering([short], **found, now=T0 + timedelta(hours=2)) is None


@pytest.mark.parametrize(
    ("kind", "ident", "article"),
    [
        ("device", "TT-101", "a"),
        ("enterprise", "HC001\x00", "an"),
        ("rule", "a b", "a"),
    ],
)
def test_a_badly_spelt_subject_id_is_refused_naming_subject_id(kind, ident, article):
    with pytest.raises(ValidationError) as caught:
        SilenceSubject.model_validate({"kind": kind, "id": ident})
    [error] = caught.value.errors(include_url=False)
    assert error["loc"] == ("id",)
    assert error["msg"].startswith(f"Value error, {article} {kind} silence names")


def test_an_unknown_kind_is_reported_rather_than_the_id():
    with pytest.raises(ValidationError) as caught:
        SilenceSubject.model_validate({"kind": "grid", "id": "x/y/z"})
    assert [e["loc"] for e in caught.value.errors()] == [("kind",)]
