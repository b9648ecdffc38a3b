"""Grid and district warnings on the real pipeline: toxic gas at two
enterprises of one grid reaches the platform receiver as one grid warning
(the default rule toxic-gas-several-enterprises, level I) and, with a
district rule added to the defaults, as one district warning; a third
enterprise of the district in another grid joins the district warning (an
update) and gives no grid warning of its own grid; when the gas clears both
resolve."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest

from stream_jobs.cloudevent import TYPE_PREFIX
from tests.integration.conftest import until
from tests.integration.test_pipeline import (
    _device,
    publish_minutely,
    running_pipeline,
)

GRID_RULE = "toxic-gas-several-enterprises"
DISTRICT_RULE = "toxic-gas-several-grids"
# From the sample registry: HC003 and HC016 are in grid binhai-g1, HC005 in
# binhai-g3, all three in district binhai.
GRID, DISTRICT = "binhai-g1", "binhai"
FIRST, SECOND, OTHER_GRID = "HC003", "HC016", "HC005"

DISTRICT_YAML = f"""
rules:
  - id: {DISTRICT_RULE}
    title: Toxic gas in several grids of one district
    description: Toxic gas above 25 ppm at two or more enterprises of a district.
    level: II
    scope: district
    group:
      min_members: 2
      window: 30m
    select:
      metrics: [toxic_gas_ppm]
    when:
      above: 25
    clear:
      below: 20
    clear_for: 5m
    action: Have the district's emergency office coordinate the grids.
    expected: Below 25 ppm at every enterprise of the district.
"""


@pytest.fixture(scope="module")
def pipeline(settings, stack, tmp_path_factory):
    rules = tmp_path_factory.mktemp("rules") / "rules"
    shutil.copytree(str(resources.files("alert_rules").joinpath("defaults")), rules)
    (rules / "district.yaml").write_text(DISTRICT_YAML)
    yield from running_pipeline(settings, tmp_path_factory, rules_dir=rules)


def _toxic(pipeline, enterprise, device, start, values):
    publish_minutely(
        pipeline, enterprise, device, "toxic_gas_ppm", "ppm", start, values
    )


def _versions(pipeline, rule, subject):
    return [
        w
        for w in list(pipeline.receiver.warnings)
        if w.get("rule_id") == rule and w["scope"]["id"] == subject
    ]


def test_toxic_gas_at_two_enterprises_is_one_grid_and_one_district_warning(
    pipeline,
):
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    devices = {e: _device("GD") for e in (FIRST, SECOND, OTHER_GRID)}
    # 40 ppm for 5 minutes at the first two (the second a minute later).
    _toxic(pipeline, FIRST, devices[FIRST], start, [2, 40, 40, 40, 40, 40])
    _toxic(pipeline, SECOND, devices[SECOND], start, [2, 2, 40, 40, 40, 40])

    [grid] = until(lambda: _versions(pipeline, GRID_RULE, GRID), "no grid warning")
    assert (grid["status"], grid["level"], grid["scope"]["kind"]) == (
        "open",
        "I",
        "grid",
    )
    assert sorted(m["id"] for m in grid["members"]) == [FIRST, SECOND]
    assert (grid["grid"], grid["district"]) == (GRID, DISTRICT)
    # Opened when the second member's finding began: its first reading over.
    assert datetime.fromisoformat(grid["start_time"]) == start + timedelta(minutes=2)
    [district] = until(
        lambda: _versions(pipeline, DISTRICT_RULE, DISTRICT),
        "no district warning",
    )
    assert (district["level"], district["scope"]["kind"]) == ("II", "district")
    assert sorted(m["id"] for m in district["members"]) == [FIRST, SECOND]

    # A third enterprise of the district, in another grid: it joins the
    # district warning; its grid, with one member, gets no warning.
    _toxic(pipeline, OTHER_GRID, devices[OTHER_GRID], start, [2, 2, 2, 40, 40, 40])
    updated = until(
        lambda: _versions(pipeline, DISTRICT_RULE, DISTRICT)[1:],
        "the third enterprise never joined the district warning",
    )[0]
    assert updated["id"] == district["id"]
    assert sorted(m["id"] for m in updated["members"]) == [FIRST, OTHER_GRID, SECOND]
    assert dict(pipeline.receiver.events)[f"{district['id']}.v2"] == (
        TYPE_PREFIX + "updated"
    )
    assert _versions(pipeline, GRID_RULE, "binhai-g3") == []

    # The gas clears everywhere (under 20 ppm, held 5 minutes): both resolve.
    later = start + timedelta(minutes=6)
    for enterprise, device in devices.items():
        _toxic(pipeline, enterprise, device, later, [5] * 7)
    for rule, subject in ((GRID_RULE, GRID), (DISTRICT_RULE, DISTRICT)):
        resolved = until(
            lambda rule=rule, subject=subject: [
                w
                for w in _versions(pipeline, rule, subject)
                if w["status"] == "resolved"
            ],
            f"{rule} never resolved",
        )
        assert len(resolved) == 1
    assert len(_versions(pipeline, GRID_RULE, GRID)) == 2  # opened, resolved
