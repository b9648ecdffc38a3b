import pytest
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


@pytest.mark.parametrize(
    ("env", "config", "expected"),
    [
        (
            {"RISKWATCH_MQTT__DEVICE_ACCOUNTS": "{bad"},
            None,
            "ConfigError: environment variable RISKWATCH_MQTT__DEVICE_ACCOUNTS is "
            "not valid JSON",
        ),
        ({}, "[kafka\n", "is not valid TOML: "),
    ],
)
def test_bad_settings_are_config_errors_not_tracebacks(tmp_path, env, config, expected):
    args = ["services", "status"]
    if config is not None:
        (tmp_path / "c.toml").write_text(config, encoding="utf-8")
        args = ["--config", str(tmp_path / "c.toml"), *args]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 1
    assert expected in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_status_names_an_unreadable_pid_file(tmp_path):
    pid_file = tmp_path / "run" / "mosquitto" / "mosquitto.pid"
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text("garbage", encoding="utf-8")
    env = {
        "RISKWATCH_RUN_DIR": str(tmp_path / "run"),
        "RISKWATCH_MQTT__PORT": "1",
        "RISKWATCH_KAFKA__PORT": "2",
        "RISKWATCH_INFLUXDB__PORT": "3",
    }
    result = CliRunner().invoke(cli, ["services", "status", "mosquitto"], env=env)
    assert result.exit_code == 3
    assert f"unknown: port free, pid file {pid_file} unreadable" in result.output
    down = CliRunner().invoke(cli, ["services", "down", "mosquitto"], env=env)
    assert down.exit_code == 1
    assert f"ServiceError: mosquitto: cannot stop: pid file {pid_file}" in down.output
    assert pid_file.exists()


def _bad_header():
    raise ValueError("Invalid header value: b'Bearer s3cr3t-token\\x01'")


def test_tokens_are_blanked_in_log_lines_and_tracebacks():
    import logging  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from riskwatch.cli import RedactTokens  # noqa: PLC0415

    try:
        _bad_header()
    except ValueError:
        info = sys.exc_info()
    record = logging.LogRecord(
        "aiohttp.server",
        logging.ERROR,
        __file__,
        1,
        "Error handling request %s",
        ("Authorization: Bearer s3cr3t-token",),
        exc_info=info,
    )
    assert RedactTokens().filter(record)
    text = logging.Formatter("%(message)s").format(record)
    assert "s3cr3t" not in text
    assert "Bearer <redacted>" in text
