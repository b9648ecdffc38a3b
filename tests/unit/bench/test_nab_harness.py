"""The NAB harness on a tiny NAB-layout corpus written by the test."""

import csv
import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from riskwatch.cli import cli
from stream_jobs.bench import candidates
from stream_jobs.bench.harness import format_table, load_corpus, run_benchmark
from stream_jobs.bench.series import BenchInputError, timestamp_ns

T0 = datetime(2014, 4, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)
ROWS = 200
# (category, name) -> windows as row ranges; 30 probationary rows per file.
FILES = {
    ("realThing", "alpha.csv"): [(100, 119)],
    ("artificialThing", "beta.csv"): [(60, 69), (150, 169)],
}
# Each file starts on its own day, so that a window start of one file is no
# timestamp of the other.
DAY = {name: k for k, (_, name) in enumerate(FILES)}


def stamp(row, name="alpha.csv"):
    return (T0 + timedelta(days=DAY[name]) + row * STEP).strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def corpus(tmp_path):
    data = tmp_path / "nab"
    labels = {}
    for (category, name), windows in FILES.items():
        (data / category).mkdir(parents=True, exist_ok=True)
        with (data / category / name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["timestamp", "value"])
            for row in range(ROWS):
                writer.writerow([stamp(row, name), f"{20 + (row % 7) * 0.5:.1f}"])
        labels[f"{category}/{name}"] = [
            [f"{stamp(a, name)}.000000", f"{stamp(b, name)}.000000"] for a, b in windows
        ]
    (data / "combined_windows.json").write_text(json.dumps(labels))
    return data


class AtWindowStarts:
    """A test oracle that fires exactly at the first row of every window."""

    starts = frozenset(
        timestamp_ns(stamp(a, name))
        for (_, name), windows in FILES.items()
        for a, _ in windows
    )

    def score(self, value, ts_ns):
        return 1.0 if ts_ns in self.starts else 0.0


@pytest.fixture
def oracle(monkeypatch):
    monkeypatch.setitem(candidates.CANDIDATES, "oracle", AtWindowStarts)


def read(path):
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def test_results_are_written_in_nabs_layout_with_labels(corpus, tmp_path, oracle):
    out = tmp_path / "results"
    lines = []
    run_benchmark(corpus, out, ["oracle", "null"], progress=lines.append)
    for (category, name), windows in FILES.items():
        for detector in ("oracle", "null"):
            rows = read(out / detector / category / f"{detector}_{name}")
            assert rows[0] == ["timestamp", "value", "anomaly_score", "label"]
            assert len(rows) == ROWS + 1
            labels = [int(r[3]) for r in rows[1:]]
            inside = {i for a, b in windows for i in range(a, b + 1)}
            assert labels == [int(i in inside) for i in range(ROWS)]
            assert rows[1][:2] == [stamp(0, name), "20.0"]
    assert len(lines) == 4
    assert lines[-1].startswith("[4/4] ")
    final = json.loads((out / "final_results.json").read_text())
    assert set(final) == {"oracle", "null"}
    assert set(final["null"]) == {"standard", "reward_low_FP", "reward_low_FN"}


def test_firing_at_window_starts_scores_100_and_null_scores_0(corpus, tmp_path, oracle):
    scores = run_benchmark(corpus, tmp_path / "out", ["oracle", "null"])
    by_name = {s.detector: s for s in scores}
    for profile in ("standard", "reward_low_FP", "reward_low_FN"):
        assert by_name["oracle"].results[profile].normalised == pytest.approx(100.0)
        assert by_name["null"].results[profile].normalised == 0.0
    assert by_name["oracle"].rows == 2 * ROWS
    table = format_table(scores).splitlines()
    assert table[0].split() == [
        "detector",
        "standard",
        "reward_low_FP",
        "reward_low_FN",
        "threshold",
        "seconds",
    ]
    assert table[1].split()[:4] == ["oracle", "100.00", "100.00", "100.00"]


def test_files_run_in_parallel_give_the_same_results(corpus, tmp_path):
    one = run_benchmark(corpus, tmp_path / "a", ["riskwatch"], jobs=1)
    two = run_benchmark(corpus, tmp_path / "b", ["riskwatch"], jobs=2)
    assert one[0].results["standard"].raw == two[0].results["standard"].raw
    name = "riskwatch_alpha.csv"
    assert read(tmp_path / "a/riskwatch/realThing" / name) == read(
        tmp_path / "b/riskwatch/realThing" / name
    )


def test_a_data_file_without_labels_is_an_input_error(corpus):
    (corpus / "realThing" / "gamma.csv").write_text("timestamp,value\n")
    with pytest.raises(BenchInputError, match=r"realThing/gamma\.csv"):
        load_corpus(corpus)


def test_bench_nab_prints_the_table(corpus, tmp_path):
    out = tmp_path / "results"
    result = CliRunner().invoke(
        cli,
        [
            *("bench", "nab", "--data", str(corpus), "--out", str(out)),
            *("--detector", "riskwatch", "--detector", "null", "--jobs", "1"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "riskwatch" in result.stdout
    assert "wall_s=" in result.stdout
    assert "[4/4]" in result.stderr
    assert (out / "riskwatch" / "realThing" / "riskwatch_alpha.csv").is_file()


def test_bench_nab_reports_bad_input_without_a_traceback(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(
        cli, ["bench", "nab", "--data", str(tmp_path / "empty"), "--out", "x"]
    )
    assert result.exit_code == 1
    assert "BenchInputError: " in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args", [["bench"], ["bench", "nab"], ["bench", "replay"]], ids=" ".join
)
def test_bench_commands_have_help(args):
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
