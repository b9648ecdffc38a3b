"""``riskwatch bench detectors``: throughput and state size, measured small."""

import pytest
from click.testing import CliRunner

from riskwatch.cli import cli
from stream_jobs.bench.throughput import format_throughput, measure_throughput


def test_every_path_scores_every_reading_and_reports_state_size():
    # Batches of 13 and 7 devices: numpy's executor, then Python floats'.
    results = measure_throughput(20, 3, warmup=40, batch=13, repeat=2)
    assert [(r.path, r.table) for r in results] == [
        ("reading", "memory"),
        ("reading", "table"),
        ("batch", "memory"),
        ("batch", "table"),
    ]
    for result in results:
        assert (result.devices, result.readings) == (20, 60)
        assert result.per_second > 0
        # Bounded state: the issue allows 4 KB serialised per series.
        assert 0 < result.state_bytes_mean <= result.state_bytes_max <= 4096
    table = format_throughput(results, target=100_000)
    assert "readings/s" in table
    assert "batch path with the table round trip" in table


def test_every_path_counts_the_same_findings():
    # Past the learning period (60 readings) a young daily cycle gives the
    # detectors findings; each path scores the same readings the same way.
    results = measure_throughput(20, 3, warmup=100, batch=13, repeat=1)
    counts = {result.findings for result in results}
    assert len(counts) == 1
    assert counts.pop() > 0
    assert "findings/reading" in format_throughput(results, target=100_000)


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((0, 1, 0), "devices"),
        ((1, 0, 0), "readings_per_device"),
        ((1, 1, -1), "warmup"),
        ((1, 1, 0, 0), "batch"),
        ((1, 1, 0, 1, 0), "repeat"),
    ],
)
def test_bad_counts_name_the_parameter(args, name):
    devices, readings, warmup, *rest = args
    batch, repeat = [*rest, 1, 1][:2]
    with pytest.raises(ValueError, match=name):
        measure_throughput(devices, readings, warmup=warmup, batch=batch, repeat=repeat)


def test_detectors_command_on_a_tiny_fleet():
    result = CliRunner().invoke(
        cli,
        [
            "bench",
            "detectors",
            "--devices",
            "10",
            "--readings-per-device",
            "2",
            "--warmup",
            "35",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "state_B_mean" in result.stdout
    assert "target (issue 4)" in result.stdout
    assert "path=batch table=table" in result.stderr
