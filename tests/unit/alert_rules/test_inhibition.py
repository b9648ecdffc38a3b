"""Inhibition: which active warning holds back which opening."""

from __future__ import annotations

import pytest

from alert_rules import ScopeKind, WarningStatus
from alert_rules.inhibition import ActiveFindings, covers, inhibitor_of
from alert_rules.warning import ANY
from riskwatch.contracts import Metric
from tests.unit.conftest import make_warning_record


def _w(level, scope=ScopeKind.DEVICE, finding="silent", rule="r", **kw):
    kw.setdefault("id", f"w-{rule}-{level}-{scope.value}-{kw.get('device', 'GD-101')}")
    return make_warning_record(
        level=level, scope=scope, finding=finding, rule=rule, **kw
    )


DEVICE_IV = _w("IV", rule="device-silent")


@pytest.mark.parametrize(
    ("inhibitor", "expected"),
    [
        (_w("III", rule="sensor-silent"), True),  # same device and metric
        (_w("IV", rule="other"), False),  # equal level: no
        (_w("III", rule="x", finding="gas"), False),  # another finding
        (_w("III", rule="x", finding=None), False),  # no finding
        (_w("III", rule="x", device="GD-102"), False),  # another device
        (_w("III", rule="x", metric=Metric.TOXIC_GAS_PPM), False),  # metric
        (_w("II", ScopeKind.ENTERPRISE, device=ANY), True),  # its enterprise
        (_w("II", ScopeKind.ENTERPRISE, device=ANY, enterprise="HC002"), False),
        (_w("I", ScopeKind.GRID, device=ANY, enterprise=ANY), True),  # nanhu-g2
        (_w("I", ScopeKind.GRID, device=ANY, enterprise=ANY, grid="g9"), False),
        (_w("I", ScopeKind.DISTRICT, device=ANY, enterprise=ANY), True),
    ],
)
def test_covers(inhibitor, expected):
    assert covers(inhibitor, DEVICE_IV) is expected


def test_a_grid_warning_covers_an_enterprise_warning_of_its_grid():
    enterprise = _w("II", ScopeKind.ENTERPRISE, device=ANY)
    grid = _w("I", ScopeKind.GRID, device=ANY, enterprise=ANY)
    assert covers(grid, enterprise)
    # An enterprise warning never inhibits a grid one: no one enterprise.
    assert not covers(_w("I", ScopeKind.ENTERPRISE, device=ANY, rule="e"), grid)


def test_the_most_severe_active_inhibitor_is_chosen():
    enterprise = _w("II", ScopeKind.ENTERPRISE, device=ANY)
    grid = _w("I", ScopeKind.GRID, device=ANY, enterprise=ANY)
    resolved = _w("I", ScopeKind.DISTRICT, device=ANY, enterprise=ANY, resolved=True)
    assert inhibitor_of(DEVICE_IV, [enterprise, resolved, grid]) == grid
    assert inhibitor_of(DEVICE_IV, [resolved]) is None
    no_finding = _w("IV", rule="device-silent", finding=None)
    assert inhibitor_of(no_finding, [grid]) is None


def test_the_view_keeps_only_active_warnings_with_a_finding():
    view = ActiveFindings("127.0.0.1:1", "store")
    grid = _w("I", ScopeKind.GRID, device=ANY, enterprise=ANY)
    view.apply(grid.id.encode(), grid.to_json().encode())
    view.note(_w("II", finding=None, rule="quiet"))
    assert len(view) == 1
    assert view.active(grid.id)
    assert view.inhibitor_of(DEVICE_IV) == grid
    ended = _w("I", ScopeKind.GRID, device=ANY, enterprise=ANY, resolved=True)
    assert ended.id == grid.id
    assert ended.status == WarningStatus.RESOLVED
    view.apply(ended.id.encode(), ended.to_json().encode())
    assert not view.active(grid.id)
    assert view.inhibitor_of(DEVICE_IV, also=[grid]) == grid  # the batch counts
