"""Which observations a rule's ``select`` takes: every selector alone, and
together."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from alert_rules.rule import Selector
from riskwatch.contracts import Metric, Observation
from riskwatch.registry import Enterprise
from tests.unit.conftest import enterprise_entry

FOOD_B = Enterprise.model_validate(
    enterprise_entry(
        tags=["cold-chain"],
        devices=[
            {"id": "EM-01", "metrics": ["power_kw"]},
            {"id": "TT-01", "metrics": ["temperature_c"], "tags": ["freezer"]},
        ],
    )
)
HAZCHEM_D = Enterprise.model_validate(
    enterprise_entry(
        id="HC009",
        industry="hazardous_chemicals",
        risk_class="D",
        hazardous_chemicals=True,
        devices=[{"id": "GD-1", "metrics": ["combustible_gas_lel"]}],
    )
)


def reading(enterprise: str, device: str, metric: Metric) -> Observation:
    return Observation(
        enterprise=enterprise,
        device=device,
        metric=metric,
        ts_ns=0,
        value=1.0,
        unit="x",
        score=0.0,
    )


POWER = reading("E001", "EM-01", Metric.POWER_KW)
FREEZER = reading("E001", "TT-01", Metric.TEMPERATURE_C)
GAS = reading("HC009", "GD-1", Metric.COMBUSTIBLE_GAS_LEL)
CASES = [(POWER, FOOD_B), (FREEZER, FOOD_B), (GAS, HAZCHEM_D)]


def taken(select: dict[str, object]) -> list[str]:
    selector = Selector.model_validate(select)
    return [obs.device for obs, ent in CASES if selector.matches(obs, ent)]


@pytest.mark.parametrize(
    ("select", "devices"),
    [
        ({}, ["EM-01", "TT-01", "GD-1"]),
        ({"metrics": ["temperature_c", "combustible_gas_lel"]}, ["TT-01", "GD-1"]),
        ({"industries": ["hazardous_chemicals"]}, ["GD-1"]),
        ({"industries": ["food", "drug"]}, ["EM-01", "TT-01"]),
        ({"risk_classes": ["C", "D"]}, ["GD-1"]),
        ({"hazardous_chemicals": True}, ["GD-1"]),
        ({"hazardous_chemicals": False}, ["EM-01", "TT-01"]),
        ({"enterprises": ["E001"]}, ["EM-01", "TT-01"]),
        ({"devices": ["EM-01", "GD-1"]}, ["EM-01", "GD-1"]),
        # An enterprise's tag covers all its devices, a device's only itself.
        ({"tags": ["cold-chain"]}, ["EM-01", "TT-01"]),
        ({"tags": ["freezer"]}, ["TT-01"]),
        ({"tags": ["freezer", "nothing-has-this"]}, ["TT-01"]),
        ({"tags": ["nothing-has-this"]}, []),
        # All given selectors must match.
        ({"enterprises": ["E001"], "metrics": ["power_kw"]}, ["EM-01"]),
        ({"tags": ["cold-chain"], "risk_classes": ["D"]}, []),
    ],
)
def test_each_selector_takes_what_it_names(select, devices):
    assert taken(select) == devices


@pytest.mark.parametrize(
    "select",
    [
        {"industries": ["food"]},
        {"risk_classes": ["B"]},
        {"hazardous_chemicals": False},
        {"tags": ["cold-chain"]},
    ],
)
def test_registry_selectors_never_match_an_unregistered_enterprise(select):
    assert not Selector.model_validate(select).matches(POWER, None)


def test_identity_selectors_need_no_registry():
    select = {"enterprises": ["E001"], "devices": ["EM-01"], "metrics": ["power_kw"]}
    assert Selector.model_validate(select).matches(POWER, None)


def test_a_registry_tag_must_be_an_id():
    with pytest.raises(ValidationError, match="tags"):
        Enterprise.model_validate(enterprise_entry(tags=["has space"]))
