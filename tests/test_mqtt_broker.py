"""The test broker keeps what the appliance relies on: a persistent session (clean_session
False, fixed client id) receives the QoS 1 messages published while it was away, also across
a graceful broker restart. If these fail, the MQTT bridge tests prove nothing."""

from __future__ import annotations

import queue
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from mqtt_broker import Mosquitto, MosquittoError, mosquitto_path

TOPIC = "OPCPUBSUB/tb1/tool1/ResultManagement"


def connected(broker: Mosquitto, client_id: str, clean: bool,
              inbox: queue.Queue[bytes] | None = None) -> mqtt.Client:
    """A started, connected MQTT 3.1.1 client; messages it receives go to inbox."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=clean, protocol=mqtt.MQTTv311)
    ready: queue.Queue[bool] = queue.Queue()
    client.on_connect = lambda c, u, flags, rc, props: ready.put(
        bool(flags.session_present))
    if inbox is not None:
        client.on_message = lambda c, u, msg: inbox.put(msg.payload)
    client.connect(broker.host, broker.port, keepalive=10)
    client.loop_start()
    try:
        client.user_data_set(ready.get(timeout=10))  # session_present, for the assertions
    except queue.Empty:
        client.loop_stop()
        raise AssertionError(f"no CONNACK from {broker.url}:\n{broker.log_tail()}") from None
    return client


def disconnect(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def publish(broker: Mosquitto, payloads: list[bytes]) -> None:
    pub = connected(broker, f"pub-{uuid.uuid4().hex[:8]}", clean=True)
    try:
        infos = [pub.publish(TOPIC, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(timeout=10)  # PUBACK: the broker holds it
            assert info.is_published()
    finally:
        disconnect(pub)


def drain(inbox: queue.Queue[bytes], n: int, timeout_s: float = 10.0) -> list[bytes]:
    got = []
    try:
        for _ in range(n):
            got.append(inbox.get(timeout=timeout_s))
    except queue.Empty:
        pass
    return got


def subscribe(client: mqtt.Client) -> None:
    done: queue.Queue[bool] = queue.Queue()
    client.on_subscribe = lambda c, u, mid, codes, props: done.put(True)
    client.subscribe(TOPIC, qos=1)
    done.get(timeout=10)


def test_persistent_session_gets_what_was_published_while_away(mosquitto: Mosquitto) -> None:
    inbox: queue.Queue[bytes] = queue.Queue()
    sub = connected(mosquitto, "appliance-test", clean=False, inbox=inbox)
    subscribe(sub)
    disconnect(sub)

    sent = [f"away-{i}".encode() for i in range(50)]
    publish(mosquitto, sent)

    sub = connected(mosquitto, "appliance-test", clean=False, inbox=inbox)
    try:
        assert sub.user_data_get() is True  # session_present: the broker kept the session
        assert sorted(drain(inbox, len(sent))) == sorted(sent)
    finally:
        disconnect(sub)


def test_persistent_session_survives_a_broker_restart(mosquitto: Mosquitto) -> None:
    inbox: queue.Queue[bytes] = queue.Queue()
    sub = connected(mosquitto, "appliance-test", clean=False, inbox=inbox)
    subscribe(sub)
    disconnect(sub)
    sent = [f"before-restart-{i}".encode() for i in range(20)]
    publish(mosquitto, sent)
    port = mosquitto.port

    mosquitto.restart()

    assert mosquitto.port == port and mosquitto.url == f"mqtt://127.0.0.1:{port}"
    sub = connected(mosquitto, "appliance-test", clean=False, inbox=inbox)
    try:
        assert sub.user_data_get() is True
        assert sorted(drain(inbox, len(sent))) == sorted(sent)
        # the restored subscription is live, not only the stored queue
        publish(mosquitto, [b"after-restart"])
        assert drain(inbox, 1) == [b"after-restart"]
    finally:
        disconnect(sub)


def test_a_failed_start_says_why(tmp_path: Path) -> None:
    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed")
    with Mosquitto(workdir=tmp_path / "a") as first:
        second = Mosquitto(port=first.port, workdir=tmp_path / "b", start_timeout_s=5)
        try:
            with pytest.raises(MosquittoError, match="Address already in use"):
                second.start()
            assert not second.running
        finally:
            second.close()  # never leave a broker behind, even when the assertion fails
