"""The warning receiver on a real local port."""

import asyncio
import json
import logging

import aiohttp

from simulators.receiver import WarningReceiver, describe


def _run(coro):
    return asyncio.run(coro)


async def _exercise(receiver):
    url = await receiver.start()
    try:
        async with aiohttp.ClientSession() as session:
            warning = {
                "id": "W-1",
                "level": "red",
                "scope": {"enterprise": "HC001", "device": "GD-101"},
                "start": "2026-12-03T10:00:00+08:00",
                "title": "Combustible gas above 50 %LEL",
                "items": [{"rule": "lel_high"}],
            }
            async with session.post(url, json=warning) as resp:
                accepted = (resp.status, await resp.json())
            async with session.post(url, data=b"not json") as resp:
                not_json = (resp.status, await resp.json())
            async with session.post(url, json=[1, 2]) as resp:
                not_object = (resp.status, await resp.json())
            async with session.get(url) as resp:
                listed = await resp.json()
            async with session.get(url.replace("/warnings", "/health")) as resp:
                health = (resp.status, await resp.json())
    finally:
        await receiver.stop()
    return accepted, not_json, not_object, listed, health


def test_receiver_accepts_objects_and_refuses_the_rest(tmp_path, caplog):
    out = tmp_path / "warnings.jsonl"
    lines = []
    receiver = WarningReceiver("127.0.0.1", 0, out=out, echo=lines.append)
    with caplog.at_level(logging.INFO, logger="simulators.receiver"):
        accepted, not_json, not_object, listed, health = _run(_exercise(receiver))
    assert accepted[0] == 202
    assert not_json[0] == 400
    assert "not JSON" in not_json[1]["error"]
    assert not_object[0] == 400
    assert "JSON object, got list" in not_object[1]["error"]
    assert [w["id"] for w in listed] == ["W-1"]
    assert health == (200, {"status": "ok", "received": 1})
    stored = [json.loads(line) for line in out.read_text().splitlines()]
    assert stored == listed
    assert lines == [
        "warning level=red scope=HC001/GD-101 start=2026-12-03T10:00:00+08:00 "
        'title="Combustible gas above 50 %LEL" items=1 id=W-1'
    ]
    assert "warning rejected reason=" in caplog.text
    assert receiver.rejected == 2


def test_describe_tolerates_missing_fields():
    assert describe({}) == "warning"
    assert describe({"warning_id": 7, "starts_at": "x"}) == "warning start=x id=7"


def test_port_in_use_is_a_simulator_error():
    async def clash():
        first = WarningReceiver("127.0.0.1", 0)
        await first.start()
        try:
            second = WarningReceiver("127.0.0.1", first.port)
            try:
                await second.start()
            except Exception as exc:  # noqa: BLE001 - the type is asserted below
                return exc
            await second.stop()
            return None
        finally:
            await first.stop()

    error = _run(clash())
    assert type(error).__name__ == "SimulatorError"
    assert "cannot listen" in str(error)
