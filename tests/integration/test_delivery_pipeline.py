"""Delivery on the real pipeline while the platform is down: the receiver
answers 500 to its first posts, the worker retries with backoff, and once it
answers again each warning version is recorded exactly once, with a valid
signature, and the platform's reference is stored on the warning in
InfluxDB."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from riskwatch.timeouts import Deadline
from tests.integration.test_pipeline import _device, running_pipeline
from tests.integration.test_silenced_pipeline import RULE, _gas

OUTAGE_POSTS = 3


@pytest.fixture(scope="module")
def pipeline(settings, stack, tmp_path_factory):
    # platform.max_attempts (8) outlasts the outage: the first version's
    # fourth attempt is the first post answered.
    yield from running_pipeline(settings, tmp_path_factory)


def test_a_platform_answering_500_for_a_while_records_each_warning_once(pipeline):
    receiver = pipeline.receiver
    receiver.fail_next(OUTAGE_POSTS)
    device = _device("GD")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    # 40 %LEL from minute 1 opens the orange gas warning; back under 20 and
    # held 5 minutes resolves it: two versions of one warning.
    _gas(pipeline, device, start, [10, 40, 40, 40] + [5] * 7)

    def ours() -> list[dict]:
        return [
            w
            for w in list(receiver.warnings)
            if w.get("device_id") == device and w.get("rule_id") == RULE
        ]

    deadline = Deadline(180)
    while len(ours()) < 2:
        assert not deadline.expired(), (
            f"received {ours()}; failed={receiver.failed} "
            f"received={receiver.received} duplicates={receiver.duplicates}"
        )
        time.sleep(0.5)
    time.sleep(3)  # any late retry of a version would land by now

    versions = ours()
    assert receiver.failed == OUTAGE_POSTS
    assert [w["status"] for w in versions] == ["open", "resolved"]
    assert len({w["id"] for w in versions}) == 1
    events = [e for e, _ in receiver.events if e.startswith(versions[0]["id"])]
    assert events == [f"{versions[0]['id']}.v1", f"{versions[0]['id']}.v2"]
    # Every post the receiver recorded passed its signature check.
    assert receiver.unauthorized == 0
    assert receiver.duplicates == 0

    # The platform's receipt is recorded on the warning (one reference per
    # warning: both versions got the same one).
    deadline = Deadline(60)
    while True:
        references = {
            r.get_value()
            for r in pipeline.query(
                f'from(bucket: "{pipeline.settings.influxdb.bucket}") '
                "|> range(start: 0) "
                '|> filter(fn: (r) => r._measurement == "warning" and '
                f'r._field == "platform_reference" and r.subject == "{device}")'
            )
        }
        if len(references) == 1 or deadline.expired():
            break
        time.sleep(1)
    assert len(references) == 1
    assert references.pop().startswith("SP-")
