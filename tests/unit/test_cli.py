from click.testing import CliRunner

from riskwatch.cli import cli


def test_every_command_has_help():
    runner = CliRunner()
    for args in (
        ["--help"],
        ["services", "--help"],
        ["services", "up", "--help"],
        ["services", "down", "--help"],
        ["services", "status", "--help"],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output


def test_expected_failure_prints_error_name_and_exits_1(tmp_path):
    result = CliRunner().invoke(
        cli, ["--config", str(tmp_path / "none.toml"), "services", "status"]
    )
    assert result.exit_code == 1
    assert "ConfigError: " in result.output
    assert "Traceback" not in result.output


def test_unknown_service_is_a_usage_error():
    result = CliRunner().invoke(cli, ["services", "up", "zookeeper"])
    assert result.exit_code == 2
    assert "zookeeper" in result.output


def test_status_of_a_stack_never_started(tmp_path):
    env = {
        "RISKWATCH_RUN_DIR": str(tmp_path / "run"),
        "RISKWATCH_MQTT__PORT": "1",
        "RISKWATCH_KAFKA__PORT": "2",
        "RISKWATCH_INFLUXDB__PORT": "3",
    }
    result = CliRunner().invoke(cli, ["services", "status"], env=env)
    assert result.exit_code == 3
    lines = result.output.splitlines()
    assert lines[0].split() == ["service", "address", "pid", "health"]
    assert [line.split() for line in lines[1:]] == [
        ["mosquitto", "127.0.0.1:1", "-", "stopped"],
        ["kafka", "127.0.0.1:2", "-", "stopped"],
        ["influxdb", "127.0.0.1:3", "-", "stopped"],
    ]
