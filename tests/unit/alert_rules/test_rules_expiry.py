"""The engine forgets the warnings of a device that expired: the same
condition after the device comes back opens a new warning with a new id."""

from alert_rules import RuleEngine
from tests.unit.alert_rules.test_rules_engine import AUTHORITY, _gas


def test_expiry_returns_the_open_ids_and_clears_every_track(gas_rule, make_obs):
    engine = RuleEngine([gas_rule], authority=AUTHORITY)
    state: dict = {}
    opened = []
    for obs in _gas(make_obs, [(0, 30), (5, 31), (6, 32)]):
        state, records = engine.evaluate(obs, None, state)
        opened += records
    [warning] = opened
    before = dict(state)

    state, ids = engine.expire(state, "E1", "D1")
    assert ids == [warning.id]
    assert state["tracks"] == {}
    assert state["last_seen"] == before["last_seen"]  # a late reading stays late
    assert engine.expire(state, "E1", "D1")[1] == []

    # Back after the expiry with the gas still high: a new warning.
    again = []
    for obs in _gas(make_obs, [(6, 40), (60, 33), (65, 34)]):
        state, records = engine.evaluate(obs, None, state)
        again += records
    [renewed] = again
    assert renewed.status.value == "open"
    assert renewed.id != warning.id
    assert renewed.start_time > warning.start_time


def test_a_pending_run_is_dropped_without_an_id(gas_rule, make_obs):
    engine = RuleEngine([gas_rule], authority=AUTHORITY)
    state, _ = engine.evaluate(_gas(make_obs, [(0, 30)])[0], None, {})
    state, ids = engine.expire(state, "E1", "D1")
    assert (ids, state["tracks"]) == ([], {})
