"""``riskwatch bench replay`` (also ``riskwatch replay --offline``): a CSV series
through the worker's scoring path."""

import csv
import math

import pytest
from click.testing import CliRunner

from alert_rules import RuleEngine, load_rules
from riskwatch.cli import cli
from riskwatch.contracts import Metric
from stream_jobs import detectors
from stream_jobs.bench.replay import replay_series
from stream_jobs.bench.series import BenchInputError, read_series, timestamp_ns

ROWS = 300
HOT_ROW = 250  # 150 °C: above the limit of the test rule below
HOT_RULE = """\
rules:
  - id: too-hot
    title: Too hot
    level: III
    select:
      metrics: [temperature_c]
    when:
      above: 100
    clear:
      below: 90
    clear_for: 5m
    action: Cool it down.
    expected: At most 100 degrees.
"""


def stamp(row):
    hours, minutes = divmod(row * 5, 60)
    return f"2014-04-{1 + hours // 24:02d} {hours % 24:02d}:{minutes:02d}:00"


def value(row):
    return 150.0 if row == HOT_ROW else 20.0 + 2.0 * math.sin(row / 12.0)


@pytest.fixture
def series_csv(tmp_path):
    path = tmp_path / "oven.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "humidity", "value"])
        for row in range(ROWS):
            writer.writerow([stamp(row), "40", f"{value(row):.3f}"])
    return path


@pytest.fixture
def hot_rules(tmp_path):
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "hot.yaml").write_text(HOT_RULE)
    return folder


def test_scores_are_exactly_those_of_the_worker_detector(series_csv):
    series = read_series(series_csv)
    engine = RuleEngine(load_rules(None), authority="Test Office")
    result = replay_series(series, Metric.TEMPERATURE_C, engine)
    state = detectors.new_state()
    expected = []
    for ts, v in zip(series.ts_ns, series.values, strict=True):
        state, scored = detectors.score_value(state, Metric.TEMPERATURE_C, v, ts)
        expected.append(scored.score)
    assert [row.score for row in result.rows] == expected
    assert [row.timestamp for row in result.rows] == [stamp(r) for r in range(ROWS)]


def test_warnings_are_those_the_rules_raise(series_csv, hot_rules):
    engine = RuleEngine(load_rules(hot_rules), authority="Test Office")
    result = replay_series(read_series(series_csv), Metric.TEMPERATURE_C, engine)
    opened = [w for w in result.warnings if w.status.value == "open"]
    assert [w.rule_id for w in opened] == ["too-hot"]
    assert opened[0].start_time.isoformat().startswith(stamp(HOT_ROW).replace(" ", "T"))
    assert opened[0].authority == "Test Office"


def test_a_counter_is_scored_as_a_rate_from_its_second_reading(tmp_path):
    path = tmp_path / "meter.csv"
    path.write_text(
        "timestamp,value\n" + "".join(f"{stamp(r)},{100 + 2 * r}\n" for r in range(5))
    )
    engine = RuleEngine(load_rules(None), authority="Test Office")
    result = replay_series(read_series(path), Metric.ENERGY_KWH, engine)
    assert result.rows[0].score is None
    assert all(row.score is not None for row in result.rows[1:])


def test_a_repeated_timestamp_is_dropped_as_the_worker_drops_it(tmp_path):
    path = tmp_path / "twice.csv"
    path.write_text("timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:00:00,2\n")
    engine = RuleEngine(load_rules(None), authority="Test Office")
    result = replay_series(read_series(path), Metric.TEMPERATURE_C, engine)
    assert [row.score for row in result.rows] == [0.0, None]


def test_bad_input_names_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,value\n2014-04-01 00:00:00,1\nyesterday,2\n")
    with pytest.raises(BenchInputError, match=r"bad\.csv:3: timestamp 'yesterday'"):
        read_series(path)
    with pytest.raises(BenchInputError, match="no column 'flow'"):
        read_series(path, "flow")
    assert timestamp_ns("2014-04-01 00:00:00") == 1396310400 * 10**9


OFFLINE_COMMANDS = [("bench", "replay"), ("replay", "--offline")]


@pytest.mark.parametrize("command", OFFLINE_COMMANDS)
def test_bench_replay_writes_scores_and_prints_warnings(
    series_csv, hot_rules, tmp_path, command
):
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(
        cli,
        [
            *command,
            *(str(series_csv), "--column", "value"),
            *("--rules", str(hot_rules), "--out", str(out)),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"readings={ROWS}" in result.stdout
    assert "rule=too-hot" in result.stdout
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["timestamp", "value", "score", "learning", "detectors"]
    assert len(rows) == ROWS
    assert rows[HOT_ROW]["value"] == "150.000"


@pytest.mark.parametrize("command", OFFLINE_COMMANDS)
def test_bench_replay_prints_csv_on_stdout_without_out(series_csv, command):
    result = CliRunner().invoke(cli, [*command, str(series_csv)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "timestamp,value,score,learning,detectors"
    assert len(lines) == ROWS + 1
    assert "readings=300" in result.stderr


def test_bench_replay_of_a_missing_column_exits_1(series_csv):
    result = CliRunner().invoke(
        cli, ["bench", "replay", str(series_csv), "--column", "flow"]
    )
    assert result.exit_code == 1
    assert "BenchInputError: " in result.output


@pytest.mark.parametrize(
    ("args", "wrong"),
    [
        (["--offline", "--speedup", "10"], "--limit and --speedup"),
        (["--offline", "--limit", "5"], "--limit and --speedup"),
        (["--out", "scores.csv"], "--rules and --out"),
    ],
)
def test_replay_refuses_options_of_the_other_mode(series_csv, args, wrong):
    result = CliRunner().invoke(cli, ["replay", str(series_csv), *args])
    assert result.exit_code == 2
    assert wrong in result.output
