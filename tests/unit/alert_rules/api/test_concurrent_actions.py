"""Officers racing on one warning (D5 of the attack run): every request passes
the API's check against the store, the lifecycle agent applies the first
and refuses the others; the losers are answered 409 naming the status the
warning then had, at once, not 202 after api.apply_timeout_s."""

import asyncio
import logging
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from alert_rules.api.views import REFUSALS_KEPT, RefusalView, WarningView
from alert_rules.lifecycle import Action, Command, Refusal
from riskwatch.contracts import to_json_bytes
from riskwatch.topics import WARNING_REFUSALS, WARNING_STORE
from tests.unit.alert_rules.api.conftest import OFFICER, Api
from tests.unit.conftest import T0, make_warning_record

OPENED = make_warning_record()
HEADERS = {"Authorization": f"Bearer {OFFICER}"}


def _race(api, paths, bodies, seed=OPENED):
    """Send every request at once, let the fake worker apply what they sent
    once all are waiting; [(status, json)] in request order and the seconds
    from the release to the last answer."""

    async def go():
        api.sink.seed(seed)
        api.sink.hold = True
        async with TestClient(TestServer(api.app())) as client:

            async def one(path, body):
                async with client.post(path, headers=HEADERS, json=body) as resp:
                    return resp.status, await resp.json()

            tasks = [
                asyncio.create_task(one(p, b))
                for p, b in zip(paths, bodies, strict=True)
            ]
            while len(api.sink.held) < len(tasks):
                await asyncio.sleep(0.005)
            released = time.monotonic()
            api.sink.release()
            answers = await asyncio.gather(*tasks)
            return answers, time.monotonic() - released

    return asyncio.run(go())


@pytest.mark.parametrize("officers", [2, 5])
def test_concurrent_acknowledges_one_wins_the_others_get_409_at_once(officers, caplog):
    api = Api(apply_timeout_s=30)
    path = f"/warnings/{OPENED.id}/acknowledge"
    with caplog.at_level(logging.INFO, logger="alert_rules.api.app"):
        answers, elapsed = _race(api, [path] * officers, [{}] * officers)
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] + [409] * (officers - 1)
    assert elapsed < 2, f"the losers waited {elapsed:.1f}s (apply_timeout_s is 30)"
    for status, answer in answers:
        if status == 409:
            assert answer == {
                "error": "Conflict",
                "message": f"warning {OPENED.id} is acknowledged: acknowledge is "
                "allowed only when it is open, resolved",
                "field": "status",
            }
    assert caplog.text.count(f"command refused warning={OPENED.id}") == officers - 1
    assert api.view.get(OPENED.id).status == "acknowledged"


def test_a_close_racing_an_acknowledge_is_told_the_status_it_lost_to():
    api = Api(apply_timeout_s=30)
    # The warning resolved: acknowledge and close are both allowed; the
    # acknowledge sent first wins.
    resolved = make_warning_record(resolved=True)
    assert (resolved.id, resolved.status) == (OPENED.id, "resolved")
    ack, close = (f"/warnings/{OPENED.id}/{a}" for a in ("acknowledge", "close"))
    answers, elapsed = _race(api, [ack, close], [{}, {}], seed=resolved)
    assert sorted(status for status, _ in answers) == [200, 409]
    # Whichever the fake worker got first wins; the other is told its status.
    won = next(answer for status, answer in answers if status == 200)["warning"]
    lost = "close" if won["status"] == "acknowledged" else "acknowledge"
    [refused] = [answer for status, answer in answers if status == 409]
    assert refused["message"].startswith(
        f"warning {OPENED.id} is {won['status']}: {lost} is allowed only when"
    )
    assert elapsed < 2


def test_a_refusal_read_before_its_request_waits_still_answers_it():
    async def go():
        view = WarningView("127.0.0.1:1", WARNING_STORE)
        refusals = RefusalView("127.0.0.1:1", WARNING_REFUSALS, view)
        command = Command(
            id="api-1", warning=OPENED.id, action=Action.CLOSE, by="li", at=T0
        )
        state_error = Refusal(
            command="api-1",
            warning=OPENED.id,
            action=Action.CLOSE,
            by="li",
            status="open",
            reason="warning x is open: close is allowed only when it is disposed",
        )
        refusals.apply(OPENED.id.encode(), to_json_bytes(state_error))
        refusals.apply(OPENED.id.encode(), b'{"command": 1}')  # skipped, logged
        found = await view.applied(OPENED.id, command.id, timeout_s=5)
        return found, len(refusals)

    found, read = asyncio.run(go())
    assert isinstance(found, Refusal)
    assert (found.command, found.status, read) == ("api-1", "open", 1)


def test_the_refusals_remembered_are_bounded():
    view = WarningView("127.0.0.1:1", WARNING_STORE)
    for n in range(REFUSALS_KEPT + 10):
        view.refused(
            Refusal(
                command=f"api-{n}",
                warning="w",
                action=Action.ACKNOWLEDGE,
                by="li",
                status="closed",
                reason="r",
            )
        )
    assert len(view._refused) == REFUSALS_KEPT
    assert "api-0" not in view._refused
    assert f"api-{REFUSALS_KEPT + 9}" in view._refused
