import os
from pathlib import Path

import pytest

from riskwatch.errors import ConfigError
from riskwatch.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("RISKWATCH_"):
            monkeypatch.delenv(key)


def test_defaults_run_everything_on_loopback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert (s.mqtt.host, s.kafka.host, s.influxdb.host) == ("127.0.0.1",) * 3
    assert s.run_dir == tmp_path.resolve() / ".riskwatch"
    assert s.kafka.readings_partitions == 8


def test_environment_overrides_nested_fields(monkeypatch):
    monkeypatch.setenv("RISKWATCH_KAFKA__PORT", "19092")
    monkeypatch.setenv("RISKWATCH_MQTT__DEVICE_ACCOUNTS", '{"meter-7": "E007"}')
    s = load_settings()
    assert s.kafka.port == 19092
    assert s.kafka.bootstrap == "127.0.0.1:19092"
    assert s.mqtt.device_accounts == {"meter-7": "E007"}


def test_toml_file_is_read_and_environment_wins(tmp_path, monkeypatch):
    config = tmp_path / "riskwatch.toml"
    config.write_text(
        '[influxdb]\nport = 18086\nbucket = "plant"\n[kafka]\nheap_mb = 512\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("RISKWATCH_INFLUXDB__PORT", "28086")
    s = load_settings(config)
    assert s.influxdb.bucket == "plant"
    assert s.kafka.heap_mb == 512
    assert s.influxdb.port == 28086


def test_config_file_from_environment_variable(tmp_path, monkeypatch):
    config = tmp_path / "c.toml"
    config.write_text("[mqtt]\nport = 11883\n", encoding="utf-8")
    monkeypatch.setenv("RISKWATCH_CONFIG", str(config))
    assert load_settings().mqtt.port == 11883


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"does-not-exist\.toml does not exist"):
        load_settings(tmp_path / "does-not-exist.toml")


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("RISKWATCH_KAFKA__PORT", "70000", "kafka.port"),
        ("RISKWATCH_KAFKA__HEAP_MB", "12", "kafka.heap_mb"),
        (
            "RISKWATCH_MQTT__DEVICE_ACCOUNTS",
            '{"bad user": "E1"}',
            "mqtt.device_accounts",
        ),
        ("RISKWATCH_MQTT__DEVICE_ACCOUNTS", '{"u1": "E/1"}', "mqtt.device_accounts"),
    ],
)
def test_invalid_values_name_the_field(monkeypatch, variable, value, field):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=rf"invalid settings: {field}"):
        load_settings()


def test_unknown_setting_in_file_is_rejected(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[kafka]\nprot = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"kafka\.prot"):
        load_settings(config)


def test_settings_are_frozen():
    s = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        s.kafka.port = 1  # type: ignore[misc]


def test_paths_are_made_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RISKWATCH_RUN_DIR", "rel/run")
    assert load_settings().run_dir == Path(tmp_path).resolve() / "rel" / "run"


@pytest.mark.parametrize(
    "variable", ["RISKWATCH_MQTT__DEVICE_ACCOUNTS", "RISKWATCH_MQTT", "RISKWATCH_KAFKA"]
)
def test_invalid_json_in_a_variable_names_the_variable(monkeypatch, variable):
    monkeypatch.setenv("RISKWATCH_KAFKA__PORT", "19092")  # fine, not to be blamed
    monkeypatch.setenv(variable, '{"meter-7": ')
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith(
        f"environment variable {variable} is not valid JSON: Expecting value"
    )


def test_toml_syntax_error_names_the_file_and_the_line(tmp_path):
    config = tmp_path / "broken.toml"
    config.write_text("[kafka\nport = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert str(info.value) == (
        f"config file {config} is not valid TOML: Expected ']' at the end of a "
        "table declaration (at line 1, column 7)"
    )


def test_config_file_that_is_not_utf8_is_a_config_error(tmp_path):
    config = tmp_path / "latin1.toml"
    config.write_bytes(b'[influxdb]\norg = "b\xe4ckerei"\n')
    with pytest.raises(ConfigError, match=r"latin1\.toml"):
        load_settings(config)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("RISKWATCH_KAFKA__PORT", "1883", "mqtt.port and kafka.port are both 1883"),
        (
            "RISKWATCH_INFLUXDB__PORT",
            "9093",
            "kafka.controller_port and influxdb.port are both 9093",
        ),
        (
            "RISKWATCH_WORKER__WEB_PORT",
            "8086",
            "influxdb.port and worker.web_port are both 8086",
        ),
    ],
)
def test_two_services_on_one_port_are_refused(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=rf"invalid settings: .*{message}"):
        load_settings()
