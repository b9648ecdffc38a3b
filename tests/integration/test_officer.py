"""An officer handles a warning raised through the real pipeline: the officer
API lists it, the CLI acknowledges, disposes and closes it, the audit trail
shows each transition in order, and the platform receiver got each version as
a CloudEvent of its own type. A viewer's token is refused for actions."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta

import pytest

from alert_rules.api.server import READY_LINE
from riskwatch.timeouts import Deadline
from stream_jobs.cloudevent import TYPE_PREFIX
from tests.integration.conftest import run_riskwatch
from tests.integration.test_pipeline import (
    ENTERPRISE,
    _free_port,
    _start,
    _stop,
    pipeline,  # noqa: F401 - the module's pipeline fixture, shared
    raise_stuck_warning,
)


def _cli(env, *args):
    return run_riskwatch("warnings", *args, env=env, timeout=120)


def _ok(env, *args):
    result = _cli(env, *args)
    assert result.returncode == 0, (
        f"warnings {' '.join(args)} exited {result.returncode}\n"
        f"{result.stdout}\n{result.stderr}"
    )
    return result.stdout


@pytest.fixture(scope="module")
def api_env(pipeline):  # noqa: F811 - the fixture imported above
    env = {**pipeline.env, "RISKWATCH_API__PORT": str(_free_port())}
    proc = _start("api", env, pipeline.folder, (READY_LINE,))
    try:
        yield env
    finally:
        _stop(proc)


def test_officer_acknowledges_disposes_and_closes_a_pipeline_warning(
    pipeline,  # noqa: F811
    api_env,
):
    # The warning store outlives the run and the id follows from the data's
    # times (on a 5-minute grid): a random end keeps an earlier run's closed
    # warning out of the way.
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    end -= timedelta(minutes=random.randrange(1, 20_000))  # noqa: S311 - not crypto
    stuck, _ = raise_stuck_warning(pipeline, end)
    assert stuck, "no stuck-sensor warning for the injected flatline"
    ident = stuck[0]["id"]
    deadline = Deadline(60)
    while True:
        listed = json.loads(
            _ok(
                api_env, "list", "--enterprise", ENTERPRISE, "--json", "--limit", "1000"
            )
        )
        if any(w["id"] == ident for w in listed["warnings"]):
            break
        assert not deadline.expired(), f"the API does not list {ident}"
        time.sleep(0.5)

    refused = _cli(api_env, "--user", "viewer", "ack", ident)
    assert refused.returncode == 1
    assert refused.stderr.startswith("Forbidden: ")

    assert _ok(api_env, "ack", ident, "--comment", "on my way").startswith(
        f"acknowledged {ident}"
    )
    conflict = _cli(api_env, "close", ident)
    assert (conflict.returncode, conflict.stderr.split(":")[0]) == (1, "Conflict")
    assert _ok(api_env, "dispose", ident, "--note", "sensor replaced").startswith(
        f"disposed {ident}"
    )
    assert _ok(api_env, "close", ident).startswith(f"closed {ident}")

    shown = json.loads(_ok(api_env, "show", ident, "--json"))
    trail = [(e["from_status"], e["status"], e["by"]) for e in shown["history"]]
    assert trail == [
        (None, "open", "riskwatch-rules"),
        ("open", "acknowledged", "officer"),
        ("acknowledged", "disposed", "officer"),
        ("disposed", "closed", "officer"),
    ]
    assert shown["history"][2]["comment"] == "sensor replaced"
    assert shown["deadline"] is not None
    [series] = shown["evidence"]
    assert series["error"] is None
    assert len(series["points"]) > 0

    expected = [
        (f"{ident}.v{n}", TYPE_PREFIX + name)
        for n, name in enumerate(("opened", "acknowledged", "disposed", "closed"), 1)
    ]
    deadline = Deadline(60)
    while [e for e in pipeline.receiver.events if e[0].startswith(ident)] != expected:
        assert not deadline.expired(), list(pipeline.receiver.events)
        time.sleep(0.5)
