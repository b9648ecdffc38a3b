"""The warning receiver on a real local port."""

import asyncio
import json
import logging

import aiohttp
from pydantic import SecretStr

from riskwatch.signing import SIGNATURE_HEADER, signed_headers
from simulators.receiver import WarningReceiver, describe
from stream_jobs.cloudevent import source_of, to_http

SECRET = SecretStr("receiver-secret")
SOURCE = source_of("test")
NOW = 1_800_000_000.0


def _run(coro):
    return asyncio.run(coro)


def signed(record, secret=SECRET, now=NOW):
    headers, body = to_http(record, SOURCE)
    return {**headers, **signed_headers(secret, body, now)}, body


async def _exchange(receiver, requests):
    """POST each (headers, body); the (status, answer) of each, then GET."""
    url = await receiver.start()
    answers = []
    try:
        async with aiohttp.ClientSession() as session:
            for headers, body in requests:
                async with session.post(url, data=body, headers=headers) as resp:
                    answers.append((resp.status, await resp.json()))
            async with session.get(url) as resp:
                listed = await resp.json()
            async with session.get(url.replace("/warnings", "/health")) as resp:
                health = (resp.status, await resp.json())
    finally:
        await receiver.stop()
    return answers, listed, health


def receiver_at(tmp_path=None, **kwargs):
    return WarningReceiver(
        "127.0.0.1",
        0,
        secret=SECRET,
        out=tmp_path / "warnings.jsonl" if tmp_path else None,
        clock=lambda: NOW,
        **kwargs,
    )


def test_signed_events_are_recorded_once_with_a_receipt_per_warning(
    make_warning, tmp_path, caplog
):
    opened, resolved = make_warning(), make_warning(resolved=True)
    other = make_warning(device="GD-102", level="I")
    lines: list[str] = []
    receiver = receiver_at(tmp_path, echo=lines.append)
    requests = [signed(opened), signed(opened), signed(resolved), signed(other)]
    with caplog.at_level(logging.INFO, logger="simulators.receiver"):
        answers, listed, health = _run(_exchange(receiver, requests))
    assert answers == [
        (
            202,
            {"reference": "SP-000001", "event": opened.version_id, "duplicate": False},
        ),
        (
            200,
            {"reference": "SP-000001", "event": opened.version_id, "duplicate": True},
        ),
        (
            202,
            {
                "reference": "SP-000001",
                "event": resolved.version_id,
                "duplicate": False,
            },
        ),
        (
            202,
            {"reference": "SP-000002", "event": other.version_id, "duplicate": False},
        ),
    ]
    assert listed == [r.model_dump(mode="json") for r in (opened, resolved, other)]
    assert health == (
        200,
        {
            "status": "ok",
            "received": 3,
            "duplicates": 1,
            "rejected": 0,
            "unauthorized": 0,
            "failed": 0,
        },
    )
    stored = [
        json.loads(line)
        for line in (tmp_path / "warnings.jsonl").read_text().splitlines()
    ]
    assert stored == listed
    # One line per warning version as it arrives, as the demo prints them.
    # with its items under it.
    (item,) = opened.items
    assert lines[0].splitlines() == [
        f"warning level=II scope=device/GD-101/GD-101 & co <1> status=open "
        f"start=2026-12-03T01:00:00.250000Z "
        f'title="Combustible gas above 25 %LEL" items=1 id={opened.id}',
        f"  item: {item.observed}; observed {item.observed_value:g} %LEL, "
        f"expected {item.expected_value:g} %LEL ({item.expected}); "
        f"action: {item.action}",
    ]
    assert len(lines) == 3
    assert f"warning duplicate event={opened.version_id}" in caplog.text


def test_bad_or_missing_signatures_are_401_and_counted(make_warning, caplog):
    record = make_warning()
    headers, body = signed(record)
    tampered = body.replace(b'"level": "II"', b'"level": "IV"')
    assert tampered != body
    unsigned = {k: v for k, v in headers.items() if k != SIGNATURE_HEADER}
    stale = signed(record, now=NOW - 3600)
    wrong_key = signed(record, secret=SecretStr("guess"))
    receiver = receiver_at()
    requests = [(headers, tampered), (unsigned, body), stale, wrong_key]
    with caplog.at_level(logging.WARNING, logger="simulators.receiver"):
        answers, listed, _ = _run(_exchange(receiver, requests))
    assert [status for status, _ in answers] == [401] * 4
    assert "does not match the body" in answers[0][1]["error"]
    assert "missing" in answers[1][1]["error"]
    assert "tolerance" in answers[2][1]["error"]
    assert (receiver.unauthorized, receiver.received) == (4, 0)
    assert listed == []
    assert "warning unauthorized field=X-Riskwatch-Signature" in caplog.text
    assert SECRET.get_secret_value() not in caplog.text


def test_a_rehearsed_outage_answers_500_then_records_the_retry(make_warning):
    record = make_warning()
    receiver = receiver_at(fail_first=2)
    # Even an unsigned post is refused 500 while down: nothing is checked.
    unsigned = ({"Content-Type": "application/cloudevents+json"}, b"{}")
    requests = [unsigned, signed(record), signed(record), signed(record)]
    answers, listed, (status, health) = _run(_exchange(receiver, requests))
    assert [status for status, _ in answers] == [500, 500, 202, 200]
    assert "rehearsed outage" in answers[0][1]["error"]
    assert (receiver.failed, receiver.received, receiver.duplicates) == (2, 1, 1)
    assert receiver.unauthorized == 0
    assert [w["id"] for w in listed] == [record.id]
    assert (status, health["failed"]) == (200, 2)


def test_fail_next_starts_an_outage_on_a_running_receiver(make_warning):
    record = make_warning()
    receiver = receiver_at()
    receiver.fail_next(1)
    answers, _, _ = _run(_exchange(receiver, [signed(record), signed(record)]))
    assert [status for status, _ in answers] == [500, 202]


def test_signed_bodies_that_are_no_warning_event_are_400(make_warning):
    def sign(body):
        return {
            "Content-Type": "application/cloudevents+json",
            **signed_headers(SECRET, body, NOW),
        }, body

    record = json.loads(to_http(make_warning(), SOURCE)[1])
    record["data"]["colour"] = "blue"
    receiver = receiver_at()
    answers, _, health = _run(
        _exchange(
            receiver,
            [
                sign(b"not json"),
                sign(b"[1, 2]"),
                sign(b'{"id": "x"}'),
                sign(json.dumps(record).encode()),
            ],
        )
    )
    assert [status for status, _ in answers] == [400] * 4
    assert "CloudEvent JSON object" in answers[0][1]["error"]
    assert "not a CloudEvent" in answers[2][1]["error"]
    assert "data is not a warning record" in answers[3][1]["error"]
    assert health[1]["rejected"] == 4


def test_describe_tolerates_missing_fields():
    assert describe({}) == "warning"
    # An update of a warning says which version it is.
    assert describe({"id": "W1", "status": "resolved"}) == (
        "warning status=resolved id=W1"
    )
    assert describe({"warning_id": 7, "starts_at": "x"}) == "warning start=x id=7"
    assert describe({"id": "W1", "level": "red", "title": "Gas leak"}) == (
        'warning level=red title="Gas leak" id=W1'
    )


def test_port_in_use_is_a_simulator_error():
    async def clash():
        first = WarningReceiver("127.0.0.1", 0, secret=SECRET)
        await first.start()
        try:
            second = WarningReceiver("127.0.0.1", first.port, secret=SECRET)
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
