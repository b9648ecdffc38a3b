import socket

import pytest

from riskwatch.errors import ConfigError, ServiceError
from riskwatch.services import Stack
from riskwatch.services.mosquitto import Mosquitto
from riskwatch.settings import Settings
from riskwatch.topics import ENTERPRISES, READINGS, topic_specs


def _settings(tmp_path, **mqtt):
    return Settings(
        run_dir=tmp_path / "run",
        cache_dir=tmp_path / "cache",
        mqtt={"device_accounts": {"m-1": "E001", "m-2": "E002"}, **mqtt},
    )


def test_acl_gives_the_gateway_reads_and_devices_only_their_prefix(tmp_path):
    acl = Mosquitto(_settings(tmp_path), print).acl_text()
    blocks = [b.strip().splitlines() for b in acl.split("\n\n")]
    assert blocks[0][1:] == ["user riskwatch-gateway", "topic read riskwatch/v1/#"]
    assert blocks[1] == ["user m-1", "topic write riskwatch/v1/E001/#"]
    assert blocks[2] == ["user m-2", "topic write riskwatch/v1/E002/#"]
    assert "read" not in "".join(blocks[1] + blocks[2])
    assert blocks[3] == ["user riskwatch-simulator", "topic write riskwatch/v1/#"]


def test_no_simulator_account_when_disabled(tmp_path):
    settings = Settings(run_dir=tmp_path, mqtt={"simulator_username": None})
    service = Mosquitto(settings, print)
    assert "simulator" not in service.acl_text()
    with pytest.raises(KeyError, match="no simulator account"):
        service.simulator_credentials()


def test_broker_config_denies_anonymous_and_persists(tmp_path):
    conf = Mosquitto(_settings(tmp_path), print).config_text().splitlines()
    assert "allow_anonymous false" in conf
    assert "persistence true" in conf
    assert "listener 1883 127.0.0.1" in conf


def test_device_credentials_only_for_configured_accounts(tmp_path):
    service = Mosquitto(_settings(tmp_path), print)
    user, password = service.device_credentials("m-1")
    assert user == "m-1"
    assert service.device_credentials("m-1")[1] == password
    with pytest.raises(KeyError, match="no device account 'm-9'"):
        service.device_credentials("m-9")


def test_up_refuses_a_port_taken_by_someone_else(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        service = Mosquitto(_settings(tmp_path, port=port), print)
        with pytest.raises(
            ServiceError, match=rf"mosquitto: port 127.0.0.1:{port} is taken"
        ):
            service.up()


def test_unknown_service_name_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown service zookeeper; choose from"):
        Stack(_settings(tmp_path)).select(["zookeeper"])


def test_topics_have_explicit_partitions_and_registry_is_compacted(tmp_path):
    specs = {s.name: s for s in topic_specs(_settings(tmp_path).kafka)}
    assert specs[READINGS].partitions == 8
    assert specs[ENTERPRISES].configs()["cleanup.policy"] == "compact"
    assert specs[READINGS].configs()["cleanup.policy"] == "delete"
