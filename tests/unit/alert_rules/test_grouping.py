"""Grouped rules: device findings of an enterprise's devices, or of a grid's
or district's enterprises, make one warning that lists its members, escalates
with them and resolves when too few are left."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree
from pydantic import ValidationError

from alert_rules import Level, RuleEngine, ScopeKind, WarningStatus, warning_id
from alert_rules.cap import render_cap
from alert_rules.grouping import (
    ExpiredDevice,
    GroupNote,
    GroupTable,
    apply,
    group_info,
    group_key,
    split_members,
)
from alert_rules.lifecycle import Action, Command, step
from alert_rules.warning import ANY
from riskwatch.registry import Enterprise
from stream_jobs.cloudevent import ESCALATED, UPDATED, event_type
from tests.unit.alert_rules.conftest import AUTHORITY, at
from tests.unit.conftest import enterprise_entry

GAS = "combustible_gas_lel"


def _enterprise(ident, grid="g1", district="d1", officer="GO-1"):
    return Enterprise.model_validate(
        enterprise_entry(
            id=ident,
            name=f"{ident} Works",
            grid=grid,
            district=district,
            officer={"id": officer, "name": f"Officer {officer}"},
        )
    )


REGISTRY = [
    _enterprise("E1"),
    _enterprise("E2"),
    _enterprise("E3", officer="GO-2"),
    _enterprise("E4", grid="g2"),
]


@pytest.fixture
def gas_group(make_rule):
    def make(scope="enterprise", group=None, **extra):
        text = {
            "scope": scope,
            "select": {"metrics": [GAS]},
            "when": {"above": 25},
            "clear": {"below": 20},
            "escalate": [{"when": {"above": 50}, "to": "I"}],
            **({"group": group} if group is not None else {}),
            **extra,
        }
        return make_rule(json.dumps(text))

    return make


class Replay:
    """The engine per device, then the grouping, as the worker routes them."""

    def __init__(self, rule, enterprises=REGISTRY):
        self.engine = RuleEngine([rule], AUTHORITY)
        self.table = GroupTable([rule], enterprises, AUTHORITY)
        self.registry = {e.id: e for e in enterprises}
        self.devices = {}
        self.notes = []

    def gas(self, minute, value, device="D1", enterprise="E1", make_obs=None):
        obs = make_obs(GAS, value, minute, device=device, enterprise=enterprise)
        key = (enterprise, device)
        state, records = self.engine.evaluate(
            obs, self.registry.get(enterprise), self.devices.get(key)
        )
        self.devices[key] = state
        self.notes += split_members(self.table.grouped, records)[0]
        return self.table.feed(records)


@pytest.fixture
def replay(make_obs):
    def make(rule, enterprises=REGISTRY):
        r = Replay(rule, enterprises)
        return r, lambda *a, **k: r.gas(*a, make_obs=make_obs, **k)

    return make


def _moment(minute):
    return datetime.fromtimestamp(at(minute) / 1e9, UTC)


# The rule model --------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "group", "field", "reason"),
    [
        ("device", {"min_members": 2}, "group", "has no members to group"),
        ("grid", None, "group", "needs group.min_members"),
        ("district", {"min_members": 1}, "group.min_members", "at least 2"),
        ("enterprise", {"window": "0s"}, "window", "longer than 0s"),
        ("enterprise", {"min_members": 0}, "min_members", "greater than or equal"),
    ],
)
def test_group_fields_are_checked(gas_group, scope, group, field, reason):
    with pytest.raises(ValidationError) as caught:
        gas_group(scope, group)
    text = str(caught.value)
    assert reason in text
    assert field.split(".")[-1] in text


def test_an_enterprise_rule_groups_from_one_member_by_default(gas_group):
    rule = gas_group()
    assert rule.grouping is not None
    assert (rule.grouping.min_members, rule.grouping.window) == (1, None)
    assert gas_group("device").grouping is None
    assert "at 1 or more devices of one enterprise" in rule.summary()


# Enterprise scope -------------------------------------------------------------


def test_several_devices_of_one_enterprise_are_one_warning(gas_group, replay):
    rule = gas_group()
    _, gas = replay(rule)
    assert gas(0, 2, device="D1") == []
    [opened] = gas(1, 30, device="D1")
    assert (opened.scope.kind, opened.scope.id, opened.status) == (
        ScopeKind.ENTERPRISE,
        "E1",
        WarningStatus.OPEN,
    )
    assert opened.id == warning_id(rule.id, "enterprise/E1", at(1))
    assert opened.start_time.timestamp() * 1e9 == at(1)
    assert (opened.enterprise_id, opened.device_id) == ("E1", ANY)
    assert opened.enterprise_name == "E1 Works"
    assert opened.officer is not None
    assert opened.officer.id == "GO-1"
    assert [(m.kind, m.id) for m in opened.members] == [(ScopeKind.DEVICE, "D1")]

    # A second detector: the same warning, one more member and item.
    [updated] = gas(3, 35, device="D2")
    assert updated.id == opened.id
    assert updated.level == Level.III  # the rule's
    assert event_type(updated) == UPDATED
    assert [(m.id, m.start_time.timestamp() * 1e9) for m in updated.members] == [
        ("D1", at(1)),
        ("D2", at(3)),
    ]
    assert [i.evidence.device for i in updated.items if i.evidence] == ["D1", "D2"]
    assert "D2 joined" in updated.history[-1].comment

    # D1 clears: still open (D2 has it), D1 listed as no longer active.
    [left] = gas(5, 10, device="D1")
    assert left.status == WarningStatus.OPEN
    assert [(m.id, m.active) for m in left.members] == [("D1", False), ("D2", True)]
    [resolved] = gas(6, 10, device="D2")
    assert (resolved.id, resolved.status) == (opened.id, WarningStatus.RESOLVED)
    assert resolved.resolved_time is not None
    assert resolved.resolved_time.timestamp() * 1e9 == at(6)
    assert resolved.version == 4


def test_the_group_warning_escalates_and_de_escalates_with_its_members(
    gas_group, replay
):
    rule = gas_group()
    _, gas = replay(rule)
    gas(0, 30, device="D1")
    [up] = gas(1, 60, device="D2")  # joins straight at level I
    assert (up.level, event_type(up)) == (Level.I, ESCALATED)
    assert up.history[-1].level_change == (Level.III, Level.I)
    [down] = gas(2, 30, device="D2")
    assert down.level == Level.III
    assert [e.level for e in down.levels] == [Level.III, Level.I, Level.III]


def test_a_member_record_delivered_twice_changes_nothing(gas_group, make_obs):
    rule = gas_group()
    engine = RuleEngine([rule], AUTHORITY)
    _, [member] = engine.evaluate(make_obs(GAS, 30, 1), None, {})
    note = GroupNote(rule=rule.id, group="enterprise/E1", record=member)
    info = group_info("enterprise/E1", REGISTRY)
    state, [opened] = apply(rule, None, note, info, authority=AUTHORITY)
    assert json.loads(json.dumps(state)) == state
    again, records = apply(rule, state, note, info, authority=AUTHORITY)
    assert (again, records) == (state, [])
    # From the same state, the same version: the lifecycle applies it once.
    _, [same] = apply(rule, None, note, info, authority=AUTHORITY)
    assert same == opened


def test_member_records_delivered_again_out_of_date_change_nothing(gas_group, replay):
    # After a crash the table may be ahead of the committed offset: the
    # notes since that offset come again, to a state that has them already.
    rule = gas_group()
    r, gas = replay(rule)
    gas(1, 30, device="D1")
    gas(2, 30, device="D2")
    gas(3, 10, device="D1")  # D1's resolution after its opening
    [(key, state)] = r.table.states.items()
    assert [f["device"] for f in state["findings"].values()] == ["D2"]
    for note in r.notes:
        assert r.table.apply(note) == []
    assert r.table.states[key] == state


def test_a_new_episode_has_a_new_id(gas_group, replay):
    rule = gas_group()
    _, gas = replay(rule)
    [first] = gas(1, 30)
    [resolved] = gas(2, 10)
    [second] = gas(3, 30)
    assert resolved.status == WarningStatus.RESOLVED
    assert second.id != first.id
    assert second.start_time > first.start_time


def test_an_expired_device_leaves_its_groups(gas_group, replay):
    rule = gas_group()
    r, gas = replay(rule)
    gas(1, 30, device="D1")
    gas(2, 30, device="D2")
    [note_key] = r.table.states
    expire = GroupNote(
        rule=rule.id,
        group="enterprise/E1",
        expire=ExpiredDevice(enterprise="E1", device="D1", at=_moment(3)),
    )
    assert expire.key == note_key
    [update] = r.table.apply(expire)
    assert [(m.id, m.active) for m in update.members] == [("D1", False), ("D2", True)]
    last = GroupNote(
        rule=rule.id,
        group="enterprise/E1",
        expire=ExpiredDevice(enterprise="E1", device="D2", at=_moment(4)),
    )
    [resolved] = r.table.apply(last)
    assert resolved.status == WarningStatus.RESOLVED
    assert "expired" in resolved.history[-1].comment


# Grid and district scope -----------------------------------------------------


def test_k_enterprises_of_one_grid_within_the_window_are_one_grid_warning(
    gas_group, replay
):
    rule = gas_group("grid", {"min_members": 2, "window": "30m"})
    _, gas = replay(rule)
    assert gas(0, 30, enterprise="E1") == []  # one enterprise: not yet
    assert gas(5, 30, device="D2", enterprise="E1") == []  # still one enterprise
    assert gas(10, 30, enterprise="E4") == []  # another grid
    [opened] = gas(20, 30, enterprise="E2")
    assert (opened.scope.kind, opened.scope.id, opened.scope.name) == (
        ScopeKind.GRID,
        "g1",
        "grid g1",
    )
    # It began when the second enterprise's finding did.
    assert opened.start_time.timestamp() * 1e9 == at(20)
    assert (opened.enterprise_id, opened.device_id, opened.grid) == (ANY, ANY, "g1")
    assert opened.district == "d1"
    # The grid officer: the one most of the grid's enterprises have.
    assert opened.officer is not None
    assert opened.officer.id == "GO-1"
    assert [(m.kind, m.id, m.enterprise) for m in opened.members] == [
        (ScopeKind.ENTERPRISE, "E1", "E1"),
        (ScopeKind.ENTERPRISE, "E2", "E2"),
    ]
    assert [m.start_time.timestamp() * 1e9 for m in opened.members] == [
        at(0),
        at(20),
    ]
    [joined] = gas(25, 30, enterprise="E3")
    assert [m.id for m in joined.members] == ["E1", "E2", "E3"]
    # E1's two devices clear: E1 is no longer a member, two remain.
    gas(26, 10, enterprise="E1")
    [left] = gas(27, 10, device="D2", enterprise="E1")
    assert left.status == WarningStatus.OPEN
    [resolved] = gas(28, 10, enterprise="E2")  # one left: fewer than 2
    assert resolved.status == WarningStatus.RESOLVED
    assert "only 1 have" in resolved.history[-1].comment


def test_enterprises_further_apart_than_the_window_make_no_grid_warning(
    gas_group, replay
):
    rule = gas_group("grid", {"min_members": 2, "window": "30m"})
    _, gas = replay(rule)
    assert gas(0, 30, enterprise="E1") == []
    assert gas(45, 30, enterprise="E2") == []
    # A third close to the second makes the group, the first one listed too.
    [opened] = gas(50, 30, enterprise="E3")
    assert opened.start_time.timestamp() * 1e9 == at(50)
    assert [m.id for m in opened.members] == ["E1", "E2", "E3"]


def test_a_district_groups_enterprises_across_its_grids(gas_group, replay):
    rule = gas_group("district", {"min_members": 2})
    enterprises = [*REGISTRY[:3], _enterprise("E4", grid="g2")]
    _, gas = replay(rule, enterprises)
    gas(0, 30, enterprise="E1")
    [opened] = gas(1, 30, enterprise="E4")
    assert (opened.scope.kind, opened.scope.id, opened.district) == (
        ScopeKind.DISTRICT,
        "d1",
        "d1",
    )
    assert (opened.grid, opened.officer) == (None, None)
    assert [m.id for m in opened.members] == ["E1", "E4"]


def test_a_grid_rule_skips_devices_of_unregistered_enterprises(gas_group, make_obs):
    rule = gas_group("grid", {"min_members": 2})
    engine = RuleEngine([rule], AUTHORITY)
    _, records = engine.evaluate(make_obs(GAS, 30, 1, enterprise="E9"), None, {})
    notes, others = split_members({rule.id: rule}, records)
    assert (notes, others) == ([], [])


def test_group_info_from_the_registry():
    grid = group_info("grid/g1", REGISTRY)
    assert (grid.name, grid.grid, grid.district) == ("grid g1", "g1", "d1")
    assert grid.officer is not None
    assert grid.officer.id == "GO-1"
    unknown = group_info("enterprise/E9", REGISTRY)
    assert (unknown.name, unknown.officer) == ("E9", None)
    assert group_key("r", "grid/g1") == b"r|grid/g1"


# Through the lifecycle ---------------------------------------------------------


def test_group_versions_go_through_the_lifecycle(gas_group, replay):
    rule = gas_group()
    _, gas = replay(rule)
    versions = [*gas(1, 30), *gas(2, 30, device="D2"), *gas(3, 60, device="D2")]
    versions += [*gas(4, 10, device="D2"), *gas(5, 10)]
    state, actions = None, []
    for version in versions:
        command = Command.of_engine(version)
        actions.append(command.action)
        state, published, error = step(state, command)
        assert error is None
        assert published is not None
        assert published.members == version.members
    assert actions == [
        Action.OPEN,
        Action.UPDATE,
        Action.ESCALATE,
        Action.DEESCALATE,
        Action.RESOLVE,
    ]
    assert published.status == WarningStatus.RESOLVED
    assert published.version == 5


def test_an_update_keeps_an_acknowledged_status_and_the_deadline(gas_group, replay):
    rule = gas_group()
    _, gas = replay(rule)
    [opened] = gas(1, 30)
    state, first, _ = step(None, Command.of_engine(opened))
    ack = Command(
        id="ack-1",
        warning=opened.id,
        action=Action.ACKNOWLEDGE,
        by="officer",
        at=opened.issue_time + timedelta(minutes=1),
    )
    state, _, _ = step(state, ack)
    [update] = gas(2, 30, device="D2")
    _, updated, error = step(state, Command.of_engine(update))
    assert error is None
    assert updated is not None
    assert updated.status == WarningStatus.ACKNOWLEDGED
    assert updated.deadline == first.deadline
    assert updated.history[-1].level_change is None
    assert [m.id for m in updated.members] == ["D1", "D2"]


def test_a_grid_warning_in_cap_names_the_grid_not_an_enterprise(gas_group, replay):
    rule = gas_group("grid", {"min_members": 2})
    _, gas = replay(rule)
    gas(0, 30, enterprise="E1")
    [opened] = gas(1, 30, enterprise="E2")
    doc = etree.fromstring(render_cap(opened, sender="riskwatch.local"))
    ns = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
    codes = [
        (
            g.findtext("cap:valueName", namespaces=ns),
            g.findtext("cap:value", namespaces=ns),
        )
        for g in doc.iterfind(".//cap:area/cap:geocode", ns)
    ]
    assert codes == [("grid", "g1"), ("district", "d1")]
    assert doc.findtext(".//cap:headline", namespaces=ns).endswith(", grid g1")
