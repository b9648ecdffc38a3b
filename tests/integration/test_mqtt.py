import queue
import uuid

from riskwatch.services.mosquitto import mqtt_login_ok
from tests.integration.conftest import riskwatch

NOT_AUTHORIZED = 0x87


def _topic(settings, enterprise):
    return (
        f"{settings.mqtt.topic_root}/{enterprise}/dev-{uuid.uuid4().hex[:8]}/telemetry"
    )


def test_qos1_message_reaches_the_gateway_user(settings, mqtt_probe):
    topic = _topic(settings, "E001")
    gateway = mqtt_probe(settings.mqtt.gateway_username)
    gateway.subscribe(topic)
    device = mqtt_probe("device-e001")
    assert device.publish(topic, b'{"v": 1}') == 0
    message = gateway.received.get(timeout=10)
    assert (message.topic, message.payload, message.qos) == (topic, b'{"v": 1}', 1)


def test_device_is_refused_under_another_enterprises_prefix(settings, mqtt_probe):
    topic = _topic(settings, "E002")
    gateway = mqtt_probe(settings.mqtt.gateway_username)
    gateway.subscribe(topic)
    intruder = mqtt_probe("device-e001")
    assert intruder.publish(topic, b"forged") == NOT_AUTHORIZED
    # The rightful owner's message on the same topic does arrive, and it is
    # the only one: the forged one was dropped by the broker.
    owner = mqtt_probe("device-e002")
    assert owner.publish(topic, b"genuine") == 0
    assert gateway.received.get(timeout=10).payload == b"genuine"
    assert gateway.received.empty()


def test_wrong_password_and_anonymous_logins_are_refused(settings, stack):
    host, port = settings.mqtt.host, settings.mqtt.port
    user, password = stack.mosquitto.gateway_credentials()
    assert mqtt_login_ok(host, port, user, password, timeout_s=5)
    assert not mqtt_login_ok(host, port, user, password + "x", timeout_s=5)
    assert not mqtt_login_ok(host, port, "", "", timeout_s=5)


def test_qos1_session_survives_a_broker_restart(settings, mqtt_probe):
    topic = _topic(settings, "E001")
    client_id = f"test-persist-{uuid.uuid4().hex[:8]}"
    gateway = mqtt_probe(
        settings.mqtt.gateway_username, client_id=client_id, clean_start=False
    )
    gateway.subscribe(topic)
    gateway.close()
    device = mqtt_probe("device-e001")
    assert device.publish(topic, b"queued while away") == 0
    device.close()

    riskwatch("services", "down", "mosquitto")
    riskwatch("services", "up", "mosquitto")

    back = mqtt_probe(
        settings.mqtt.gateway_username, client_id=client_id, clean_start=False
    )
    try:
        message = back.received.get(timeout=10)
    except queue.Empty:
        raise AssertionError("queued QoS 1 message lost across the restart") from None
    assert (message.topic, message.payload) == (topic, b"queued while away")
