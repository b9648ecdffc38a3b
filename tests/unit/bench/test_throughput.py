"""``riskwatch bench detectors``: throughput and state size, measured small."""

import pytest
from click.testing import CliRunner

from riskwatch.cli import cli
from stream_jobs.bench.throughput import format_throughput, measure_throughput


def test_both_modes_score_every_reading_and_report_state_size():
    results = measure_throughput(20, 3, warmup=40)
    assert [r.mode for r in results] == ["dict", "json"]
    for result in results:
        assert (result.devices, result.readings) == (20, 60)
        assert result.per_second > 0
        # Bounded state: the issue allows 4 KB serialised per series.
        assert 0 < result.state_bytes_mean <= result.state_bytes_max <= 4096
    # The same readings give the same states whichever way they are kept.
    assert results[0].state_bytes_max == results[1].state_bytes_max
    assert "readings/s" in format_throughput(results, target=100_000)


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((0, 1, 0), "devices"),
        ((1, 0, 0), "readings_per_device"),
        ((1, 1, -1), "warmup"),
    ],
)
def test_bad_counts_name_the_parameter(args, name):
    devices, readings, warmup = args
    with pytest.raises(ValueError, match=name):
        measure_throughput(devices, readings, warmup=warmup)


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
    assert "mode=json" in result.stderr
