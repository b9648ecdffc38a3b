"""The simulate, replay and receiver commands, without a broker."""

from click.testing import CliRunner

from riskwatch.cli import cli


def test_every_simulator_command_has_help_with_defaults():
    for name in ("simulate", "replay", "receiver"):
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert "[default:" in result.output


def test_replay_of_a_bad_file_prints_the_error_name(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("timestamp,value\n2013-01-01 00:00:00,warm\n")
    result = CliRunner().invoke(cli, ["replay", str(path)])
    assert result.exit_code == 1
    assert "ReplayInputError: " in result.output
    assert "Traceback" not in result.output


def test_simulate_unknown_enterprise(tmp_path):
    result = CliRunner().invoke(
        cli, ["simulate", "--only", "ZZ001", "--truth", str(tmp_path / "t.jsonl")]
    )
    assert result.exit_code == 1
    assert "ConfigError: --only: no enterprise ZZ001" in result.output


def test_simulate_with_an_unreachable_broker(tmp_path, monkeypatch):
    monkeypatch.setenv("RISKWATCH_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("RISKWATCH_MQTT__PORT", "1")
    truth = tmp_path / "truth.jsonl"
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--enterprises",
            "2",
            "--days",
            "0.1",
            "--anomaly-rate",
            "1",
            "--truth",
            str(truth),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "BrokerUnavailable: " in result.output
    assert len(truth.read_text().splitlines()) >= 2
