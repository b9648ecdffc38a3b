"""An officer handles a warning raised through the real pipeline: the officer
API lists it, the CLI acknowledges, disposes and closes it, the audit trail
shows each transition in order, and the platform receiver got each version as
a CloudEvent of its own type. A viewer's token is refused for actions.
Officers acknowledging one warning at once: one wins, the others get a
prompt 409 through the worker's refusals."""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from alert_rules.api.auth import token_secret_name
from alert_rules.api.server import READY_LINE
from alert_rules.cap import CAP_NAMESPACE
from riskwatch.secrets import SecretStore
from riskwatch.timeouts import Deadline
from stream_jobs.cloudevent import TYPE_PREFIX
from tests.capschema import validated
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


# Longer than the API's default wait, so that an answer that waited for it
# (202 after 10 s, the defect D5) is told apart from a prompt one.
APPLY_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def api_env(pipeline):  # noqa: F811 - the fixture imported above
    env = {
        **pipeline.env,
        "RISKWATCH_API__PORT": str(_free_port()),
        "RISKWATCH_API__APPLY_TIMEOUT_S": str(APPLY_TIMEOUT_S),
    }
    proc = _start("api", env, pipeline.folder, (READY_LINE,))
    try:
        yield env
    finally:
        _stop(proc)


_ENDS: list[datetime] = []  # the ends of the data published in this module


def _listed_warning(pipeline, api_env):  # noqa: F811 - the fixture imported above
    """A fresh stuck-sensor warning raised through the pipeline, once the API
    lists it; its id."""
    # The warning store outlives the run and the id follows from the data's
    # times (on a 5-minute grid): a random end keeps an earlier run's closed
    # warning out of the way. The worker ignores a device's readings older
    # than its last, so a second warning in this module comes from the 12 h
    # after the first one's (at least two days back, as the gateway refuses
    # readings from the future).
    if _ENDS:
        end = _ENDS[-1] + timedelta(hours=13)
    else:
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        end -= timedelta(minutes=random.randrange(2 * 1440, 20_000))  # noqa: S311 - not crypto
    _ENDS.append(end)
    seen = {w["id"] for w in list(pipeline.receiver.warnings)}
    stuck, _ = raise_stuck_warning(pipeline, end)
    fresh = [w["id"] for w in stuck if w["id"] not in seen]
    assert fresh, "no new stuck-sensor warning for the injected flatline"
    ident: str = fresh[0]
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
    return ident


def test_officer_acknowledges_disposes_and_closes_a_pipeline_warning(
    pipeline,  # noqa: F811
    api_env,
):
    ident = _listed_warning(pipeline, api_env)
    refused = _cli(api_env, "--user", "viewer", "ack", ident)
    assert refused.returncode == 1
    assert refused.stderr.startswith("Forbidden: ")
    # No token at all: the action is refused before it reaches the worker.
    port = api_env["RISKWATCH_API__PORT"]
    anonymous = urllib.request.Request(
        f"http://127.0.0.1:{port}/warnings/{ident}/acknowledge",
        data=b"{}",
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as unauthorized:
        urllib.request.urlopen(anonymous, timeout=10)  # noqa: S310 - loopback
    assert unauthorized.value.code == 401

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
    # The closed warning as a public warning system takes it: valid CAP 1.2.
    cap = validated(_ok(api_env, "cap", ident).encode())
    ns = {"cap": CAP_NAMESPACE}
    assert cap.findtext("cap:identifier", namespaces=ns) == f"{ident}.v4"
    assert cap.findtext("cap:msgType", namespaces=ns) == "Cancel"
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


def _post(url, token):
    """(status, JSON answer, seconds taken) of one POST with ``token``."""
    request = urllib.request.Request(  # noqa: S310 - our own http URL
        url,
        method="POST",
        data=b"{}",
        headers={"Authorization": f"Bearer {token}"},
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:  # noqa: S310
            status, body = answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        status, body = exc.code, json.loads(exc.read())
    return status, body, time.monotonic() - started


def test_officers_acknowledging_at_once_one_wins_the_others_get_409_promptly(
    pipeline,  # noqa: F811
    api_env,
):
    ident = _listed_warning(pipeline, api_env)
    token = SecretStore(pipeline.settings.run_dir / "secrets").get(
        token_secret_name("officer")
    )
    assert token is not None
    url = f"http://127.0.0.1:{api_env['RISKWATCH_API__PORT']}/warnings/{ident}"
    officers = 4
    with ThreadPoolExecutor(officers) as pool:
        answers = list(
            pool.map(lambda _: _post(f"{url}/acknowledge", token), range(officers))
        )
    statuses = sorted(status for status, _, _ in answers)
    # The store may show the winner's version before the last request's
    # check: a loser then gets the quick 409; either way none waits.
    assert statuses == [200] + [409] * (officers - 1), answers
    slowest = max(taken for _, _, taken in answers)
    assert slowest < APPLY_TIMEOUT_S / 3, f"an answer took {slowest:.1f}s"
    for status, body, _ in answers:
        if status == 409:
            assert body["field"] == "status"
            assert body["message"] == (
                f"warning {ident} is acknowledged: acknowledge is allowed only "
                "when it is open, resolved"
            )
    shown = json.loads(_ok(api_env, "show", ident, "--json", "--no-evidence"))
    assert [e["status"] for e in shown["history"]] == ["open", "acknowledged"]
    # The race reached the worker: its refusals answered the losers.
    [log] = pipeline.folder.glob("api-*.log")
    assert f"command refused warning={ident}" in log.read_text()
