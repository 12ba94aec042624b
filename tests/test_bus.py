"""The rig's MQTT bus against a real Mosquitto: pairing, duplicates, late heads, malformed
messages, expiry, broker and daemon restarts, and a kill -9 at each step of a hole's walk.

Holes are synthetic traces written as the rig's result/trace/heads messages
(appliance.ingest.json_writer); the daemon runs the tiny fixture ONNX model.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from litestar.testing import TestClient
from model_fixtures import build_model_folder
from mqtt_broker import Mosquitto, make_tls_files, mosquitto_path
from paho.mqtt.enums import CallbackAPIVersion
from test_api_support import REPO, free_port, prepare_home, running_daemon

from api.app import create_app
from appliance.bus import bridge
from appliance.bus.payloads import Answer, messages
from appliance.config import KEYPOINTS_SUFFIX, MqttConfig, load_config
from appliance.errors import ValidationError
from appliance.ingest.json_writer import write_json_messages
from appliance.services.daemon import Daemon
from appliance.services.keys import hash_key, new_key
from appliance.store import Store
from appliance.store.bus import BusHole
from appliance.synth import generate
from appliance.trace import Trace

ROOT = "OPCPUBSUB"
TOPICS = {"result": "ResultManagement", "trace": "ResultManagement/Trace",
          "heads": "AssetManagement/Heads"}


def synthetic(seed: int) -> Trace:
    return generate(1, seed)[0].trace


def hole(trace: Trace, result_id: int, second: int, tool: str = "t1"
         ) -> dict[str, tuple[str, bytes]]:
    """kind -> (topic, payload) of one hole's messages."""
    meta = replace(trace.meta, head_global_counter=result_id,
                   cycle_date=f"2025-03-01T10:{second // 60:02d}:{second % 60:02d}",
                   extra={**trace.meta.extra, "head_serial": f"H{result_id}"})
    files = write_json_messages(replace(trace, meta=meta))
    names = {"result": "Result.json", "trace": "Trace.json", "heads": "Heads.json"}
    return {kind: (f"{ROOT}/tb/{tool}/{TOPICS[kind]}", files[name])
            for kind, name in names.items()}


class Rig:
    """The rig's side of the broker: a publisher, and a subscriber to the answers."""

    def __init__(self, broker: Mosquitto) -> None:
        self.answers: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self.sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="rig-sub",
                               clean_session=False)
        self.sub.on_message = self._got
        self.sub.connect(broker.host, broker.port)
        cfg = MqttConfig()
        self.sub.subscribe([(f"{ROOT}/+/+/{suffix}", 1) for suffix in (
            cfg.keypoints_suffix, cfg.depth_suffix, cfg.appliance_suffix)])
        self.sub.loop_start()
        self.pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="rig-pub")
        self.pub.connect(broker.host, broker.port)
        self.pub.loop_start()

    def _got(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.answers.append((msg.topic, json.loads(msg.payload)))

    def send(self, topic: str, payload: bytes) -> None:
        self.pub.publish(topic, payload, qos=1).wait_for_publish(timeout=10)

    def send_hole(self, messages_of_hole: dict[str, tuple[str, bytes]],
                  order: tuple[str, ...] = ("result", "trace", "heads")) -> None:
        for kind in order:
            self.send(*messages_of_hole[kind])

    def keypoints(self) -> list[dict]:
        with self._lock:
            return [p for t, p in self.answers if t.endswith(KEYPOINTS_SUFFIX)]

    def wait(self, n: int, timeout: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.keypoints()
            if len(got) >= n:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{len(self.keypoints())} KeyPoints answers, {n} expected: "
                             f"{self.keypoints()}")

    def close(self) -> None:
        for c in (self.pub, self.sub):
            c.disconnect()
            c.loop_stop()


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    """A tiny real ONNX model folder (no torch), registered as the shipped baseline."""
    return build_model_folder(tmp_path / "shipped", "fixture-base")


@pytest.fixture
def rig(mosquitto: Mosquitto) -> Iterator[Rig]:
    r = Rig(mosquitto)
    yield r
    r.close()


def bus_config(home: Path, broker: Mosquitto, **mqtt_overrides: object) -> object:
    cfg = load_config(home)
    return replace(cfg, mqtt=replace(cfg.mqtt, url=broker.url, **mqtt_overrides))


def open_daemon(home: Path, broker: Mosquitto, baseline: Path, **mqtt_overrides: object
                ) -> Daemon:
    daemon = Daemon.open(bus_config(home, broker, **mqtt_overrides), schedule=False,
                         baseline_dir=baseline)
    deadline = time.monotonic() + 20
    while not daemon.bus_status().connected:  # subscribed before the rig publishes
        assert time.monotonic() < deadline, "the bridge never connected"
        time.sleep(0.05)
    return daemon


def wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- pairing -------------------------------------------------------------------------------------

def test_every_arrival_order_pairs_its_own_messages(
        home: Path, mosquitto: Mosquitto, rig: Rig, baseline: Path) -> None:
    daemon = open_daemon(home, mosquitto, baseline)
    try:
        rig.send_hole(hole(synthetic(1), 100, 0), ("heads", "result", "trace"))
        rig.wait(1)  # the tool is now known to send heads: its holes wait for them
        orders = list(itertools.permutations(("result", "trace", "heads")))
        for i, order in enumerate(orders):
            rig.send_hole(hole(synthetic(2 + i), 101 + i, 1 + i), order)
        answers = rig.wait(1 + len(orders))
        time.sleep(0.3)
        assert len(rig.keypoints()) == 1 + len(orders)  # nothing answered twice
        by_id = {a["ResultId"]: a for a in answers}
        assert sorted(by_id) == [str(100 + i) for i in range(1 + len(orders))]
        for rid, a in by_id.items():
            assert a["HeadId"] == f"H{rid}"
            assert a["SourceTimestamp"].startswith("2025-03-01T10:")
            assert len(a["Value"]) == 3 and "Error" not in a
            assert "AlgoVersion" in a and "fixture-base" in a["AlgoVersion"]
        status = daemon.bus_status()
        assert status.pending == 0 and status.unpublished == 0
        assert status.counts["holes"] == 1 + len(orders)
        assert daemon.store.count_holes() == 1 + len(orders)
    finally:
        daemon.close()


def test_holes_of_one_tool_seconds_apart_are_not_mixed_up(
        home: Path, mosquitto: Mosquitto, rig: Rig, baseline: Path) -> None:
    short, long_ = synthetic(11), synthetic(12)
    assert len(short) != len(long_)
    a, b = hole(short, 200, 10), hole(long_, 201, 13)
    daemon = open_daemon(home, mosquitto, baseline)
    try:
        # a time window would pair the first trace with the first result
        for kind_hole in (a["result"], b["result"], b["trace"], a["trace"]):
            rig.send(*kind_hole)
        rig.wait(2)
        for rid, trace in (("200", short), ("201", long_)):
            (owed,) = daemon.store.bus_holes_for("tb", "t1", rid)
            assert owed.hole_id is not None
            assert daemon.store.get_hole(owed.hole_id).n_samples == len(trace)
    finally:
        daemon.close()


def test_duplicates_are_answered_once(
        home: Path, mosquitto: Mosquitto, rig: Rig, baseline: Path) -> None:
    msgs = hole(synthetic(21), 300, 20)
    daemon = open_daemon(home, mosquitto, baseline)
    try:
        rig.send_hole(msgs)
        rig.send_hole(msgs)  # byte-identical copies: recognised by digest
        rig.wait(1)
        # the controller re-sends the hole in a new envelope: other bytes, same keys
        resent = {k: (t, p.replace(b'"MessageId":"', b'"MessageId":"x'))
                  for k, (t, p) in msgs.items()}
        assert resent["trace"][1] != msgs["trace"][1]
        rig.send_hole(resent)
        wait_for(lambda: daemon.bus_status().counts.get("duplicate_hole_since_start") == 1,
                 what="the re-sent hole to be recognised")
        time.sleep(0.5)
        assert len(rig.keypoints()) == 1
        assert daemon.store.count_holes() == 1
        assert daemon.bus_status().counts["duplicate_since_start"] == 3
    finally:
        daemon.close()


def test_late_heads_is_recorded_without_a_second_answer(
        home: Path, mosquitto: Mosquitto, rig: Rig, baseline: Path) -> None:
    msgs = hole(synthetic(31), 400, 30, tool="fresh")
    daemon = open_daemon(home, mosquitto, baseline)
    try:
        rig.send_hole(msgs, ("result", "trace"))
        (answer,) = rig.wait(1)
        assert answer["HeadId"] is None  # this tool never sent heads: no wait for one
        rig.send(*msgs["heads"])
        wait_for(lambda: daemon.store.bus_holes_for("tb", "fresh", "400")[0].head_id == "H400",
                 what="the late heads to be recorded")
        assert daemon.bus_status().pending == 0
        time.sleep(0.3)
        assert len(rig.keypoints()) == 1
    finally:
        daemon.close()


# -- bad input ---------------------------------------------------------------------------------

def _payload(msgs: dict[str, tuple[str, bytes]], kind: str) -> dict:
    return json.loads(msgs[kind][1])


def _trace_values(body: dict, channel: str) -> tuple[dict, str]:
    payload = body["Messages"][0]["Payload"] if isinstance(body["Messages"], list) \
        else body["Messages"]["Payload"]
    key = next(k for k in payload if f".{channel}Trace.StepTraceContent" in k)
    return payload, key


def test_malformed_messages_are_quarantined_or_answered_with_an_error(
        home: Path, mosquitto: Mosquitto, rig: Rig, baseline: Path) -> None:
    daemon = open_daemon(home, mosquitto, baseline)
    try:
        cut = hole(synthetic(41), 500, 40)
        topic, data = cut["trace"]
        rig.send(topic, data[: len(data) // 2])  # cut off
        rig.send(cut["result"][0].replace("ResultManagement", "ResultManagement/Trace"),
                 cut["result"][1])  # a result on a trace topic
        uneven = hole(synthetic(42), 501, 41)
        body = _payload(uneven, "trace")
        payload, key = _trace_values(body, "IntensityTorque")
        payload[key]["Value"] = payload[key]["Value"][:-5]
        rig.send(uneven["trace"][0], json.dumps(body).encode())
        rig.send(*uneven["result"])
        missing = hole(synthetic(43), 502, 42)
        body = _payload(missing, "trace")
        payload, key = _trace_values(body, "IntensityThrust")
        del payload[key]
        rig.send(missing["trace"][0], json.dumps(body).encode())
        rig.send(*missing["result"])
        answers = {a["ResultId"]: a for a in rig.wait(2)}
        assert answers["501"]["Error"] is True and "length" in answers["501"]["Value"].lower()
        assert answers["502"]["Error"] is True and "Thrust" in answers["502"]["Value"]
        wait_for(lambda: daemon.bus_status().counts["quarantined_messages"] >= 6,
                 what="quarantine")
        reasons = " | ".join(q["error"] for q in daemon.store.quarantined())
        assert "cut off" in reasons and "on a trace topic" in reasons
        assert daemon.store.count_holes() == 0
        # the bridge kept going: a good hole after all that is answered
        rig.send_hole(hole(synthetic(44), 503, 43), ("result", "trace"))
        answers = {a["ResultId"]: a for a in rig.wait(3)}
        assert "Error" not in answers["503"]
    finally:
        daemon.close()


def test_an_orphan_expires_by_arrival_time_and_is_answered_with_an_error(
        home: Path, mosquitto: Mosquitto, rig: Rig, baseline: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bridge, "HOUSEKEEPING_S", 0.2)
    daemon = open_daemon(home, mosquitto, baseline, unmatched_expiry_h=1 / 3600)
    try:
        orphan = hole(synthetic(51), 600, 50)
        rig.send(*orphan["result"])  # its device clock says 2025: it must not expire for that
        time.sleep(0.3)
        assert daemon.bus_status().pending == 1
        (answer,) = rig.wait(1, timeout=20)
        assert answer["Error"] is True and "no trace" in answer["Value"]
        assert daemon.bus_status().counts["expired_messages"] == 1
        assert daemon.bus_status().pending == 0
    finally:
        daemon.close()


# -- restarts ----------------------------------------------------------------------------------

def test_nothing_is_lost_while_the_daemon_is_down_or_the_broker_restarts(
        home: Path, mosquitto: Mosquitto, rig: Rig, baseline: Path) -> None:
    daemon = open_daemon(home, mosquitto, baseline)
    rig.send_hole(hole(synthetic(61), 700, 0), ("result", "trace"))
    rig.wait(1)
    daemon.close()
    for i in range(3):  # the broker keeps them for the daemon's persistent session
        rig.send_hole(hole(synthetic(62 + i), 701 + i, 1 + i), ("trace", "result"))
    mosquitto.restart()
    rig.close()
    rig.__init__(mosquitto)  # type: ignore[misc]  # same client ids: their sessions resume
    daemon = open_daemon(home, mosquitto, baseline)
    try:
        rig.wait(3)
        mosquitto.restart()  # while the daemon runs: it reconnects with back-off
        wait_for(lambda: daemon.bus_status().connected and daemon.bus_status().reconnects >= 1,
                 timeout=40, what="reconnection")
        rig.close()
        rig.__init__(mosquitto)  # type: ignore[misc]
        rig.send_hole(hole(synthetic(70), 710, 10), ("result", "trace"))
        answers = rig.wait(1, timeout=30)
        assert {a["ResultId"] for a in answers} == {"710"}
        assert daemon.store.count_holes() == 5
        wait_for(lambda: daemon.bus_status().unpublished == 0, what="PUBACKs to be stored")
    finally:
        daemon.close()


STEPS = ("receive", "stored", "acked", "estimated", "published")


@pytest.mark.parametrize("step", STEPS)
def test_kill_9_at_each_step_loses_nothing_and_duplicates_nothing(
        step: str, tmp_path: Path, mosquitto: Mosquitto, rig: Rig,
        baseline: Path) -> None:
    home = tmp_path / "home"
    prepare_home(home, baseline)
    msgs = hole(synthetic(80), 800, 0)

    port = free_port()

    def serve(kill_at: str | None) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if k != "APPLIANCE_BUS_KILL_AT"}
        if kill_at:
            env["APPLIANCE_BUS_KILL_AT"] = kill_at
        log = (tmp_path / f"serve-{kill_at or 'again'}.log").open("w")
        return subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", "serve", "--home", str(home), "--port",
             str(port), "--no-schedule", "--mqtt", mosquitto.url], env=env, cwd=REPO,
            stdout=log, stderr=subprocess.STDOUT)

    def settled() -> bool:
        key = (home / "admin.key").read_text().strip()
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/mqtt",
                          headers={"Authorization": f"Bearer {key}"}, timeout=2)
        except httpx.HTTPError:
            return False
        body = r.json() if r.status_code == 200 else {}
        return body.get("connected") is True and body["counts"].get("holes") == 1 \
            and body["unpublished"] == 0 and body["pending"] == 0

    first = serve(step)
    try:
        wait_for(lambda: "MQTT: connected and subscribed" in
                 (tmp_path / f"serve-{step}.log").read_text(),
                 timeout=60, what="the daemon to connect")
        rig.send_hole(msgs, ("result", "trace"))
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL, (tmp_path / f"serve-{step}.log").read_text()
    again = serve(None)
    try:
        wait_for(settled, timeout=90, what="the restarted daemon to answer what it owes")
        time.sleep(0.5)
        answers = rig.keypoints()
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(timeout=30)
    assert {a["ResultId"] for a in answers} == {"800"}
    # "published": the answers reached the broker, their acknowledgement was never stored;
    # the restarted daemon reads its own echo of them and does not answer again
    assert len(answers) == 1
    with Store.open(home) as store:
        assert store.count_holes() == 1
        counts = store.bus_counts()
        assert counts.holes == 1 and counts.unpublished == 0 and counts.waiting == 0


# -- what goes back, settings, the route ---------------------------------------------------------

def _bus_hole(**kw: object) -> BusHole:
    base = dict(hole_key="tb/t1/7@S", toolbox="tb", tool="t1", result_id="7", stamp="S",
                machine_id="M1", head_id=None, hole_id="h1", error=None)
    return BusHole(**{**base, **kw})  # type: ignore[arg-type]


def test_payload_shapes() -> None:
    cfg = MqttConfig()
    est = {"entry_mm": 1.0, "transition_mm": 4.25, "exit_mm": 9.5, "model_version": "m1",
           "presence": {"entry": 0.99}, "spread_mm": {}, "review_priority": 0.1,
           "estimator": "ensemble"}
    kp, depth, own = messages(Answer(_bus_hole(), est), cfg, "me")
    assert kp.topic == f"OPCPUBSUB/tb/t1/{cfg.keypoints_suffix}"
    assert depth.topic == f"OPCPUBSUB/tb/t1/{cfg.depth_suffix}"
    assert own.topic == f"OPCPUBSUB/tb/t1/{cfg.appliance_suffix}"
    k, d, o = (json.loads(m.payload) for m in (kp, depth, own))
    assert k == {"SourceTimestamp": "S", "MachineId": "M1", "ResultId": "7", "HeadId": None,
                 "Value": [1.0, 4.25, 9.5], "AlgoVersion": k["AlgoVersion"]}
    assert d["Value"] == [3.25, 5.25]
    assert o["ReviewPriority"] == 0.1 and o["ModelVersion"] == "m1" and o["Error"] is False
    one_layer = {**est, "transition_mm": None, "exit_mm": None}
    k, d, _ = (json.loads(m.payload) for m in messages(Answer(_bus_hole(), one_layer), cfg, "me"))
    assert k["Value"] == [1.0, None, None] and d["Value"] == [None, None]
    failed = messages(Answer(_bus_hole(error="arrays differ"), None, "arrays differ"), cfg, "me")
    k = json.loads(failed[0].payload)
    assert k["Error"] is True and k["Value"] == "arrays differ"


def test_mqtt_settings_are_checked(home: Path) -> None:
    (home / "appliance.toml").write_text('[mqtt]\nurl = "http://broker:1883"\n')
    with pytest.raises(ValidationError, match="mqtt.url"):
        load_config(home)
    (home / "appliance.toml").write_text('[mqtt]\nurl = "mqtt://broker"\nroot = "a/b"\n')
    with pytest.raises(ValidationError, match="mqtt.root"):
        load_config(home)
    (home / "appliance.toml").write_text('[mqtt]\nurl = "mqtts://broker"\nbogus = 1\n')
    with pytest.raises(ValidationError, match=r"\[mqtt\]\.bogus"):
        load_config(home)
    (home / "appliance.toml").write_text('[mqtt]\nurl = "mqtts://broker:8884"\n')
    assert load_config(home).mqtt.url == "mqtts://broker:8884"
    assert bridge.client_id_for(home) == bridge.client_id_for(home)
    assert bridge.client_id_for(home) != bridge.client_id_for(home / "other")


def test_get_mqtt(home: Path, baseline: Path) -> None:
    with running_daemon(home, baseline) as (_, client, headers):
        r = client.get("/mqtt", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["enabled"] is False and r.json()["connected"] is False
        assert client.get("/mqtt").status_code == 401


def test_get_mqtt_when_connected(home: Path, mosquitto: Mosquitto, rig: Rig,
                                 baseline: Path) -> None:
    daemon = open_daemon(home, mosquitto, baseline)
    try:
        rig.send_hole(hole(synthetic(90), 900, 0), ("result", "trace"))
        rig.wait(1)
        key = new_key()
        daemon.store.add_api_key("t", hash_key(key), role="integration")
        with TestClient(create_app(daemon)) as client:
            body = client.get("/mqtt", headers={"Authorization": f"Bearer {key}"}).json()
        assert body["enabled"] and body["connected"] and body["broker"] == mosquitto.url
        assert body["client_id"].startswith("appliance-")
        assert body["last_message_at"] is not None and body["pending"] == 0
        assert body["counts"]["holes"] == 1 and body["counts"]["answers_published"] == 1
    finally:
        daemon.close()


def test_a_failed_store_step_is_retried_and_loses_nothing(
        home: Path, mosquitto: Mosquitto, rig: Rig, baseline: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    daemon = open_daemon(home, mosquitto, baseline)
    try:
        real = daemon.store.bus_commit
        failures: list[int] = []

        def flaky(*args: object, **kwargs: object) -> object:
            if not failures and args[0]:  # the first step that stores messages: disk full
                failures.append(1)
                raise OSError(28, "No space left on device")
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(daemon.store, "bus_commit", flaky)
        rig.send_hole(hole(synthetic(95), 950, 0), ("result", "trace"))
        (answer,) = rig.wait(1, timeout=30)
        assert failures == [1] and answer["ResultId"] == "950" and "Error" not in answer
        assert daemon.store.count_holes() == 1
        wait_for(lambda: daemon.bus_status().pending == 0, what="nothing left waiting")
    finally:
        daemon.close()



def test_tls_with_a_client_certificate(home: Path, tmp_path: Path, baseline: Path) -> None:
    """A broker that takes TLS only, with a client certificate: [mqtt] ca_file, cert_file
    and key_file get the daemon on it; without the certificate it stays off."""
    if mosquitto_path() is None or shutil.which("openssl") is None:
        pytest.skip("mosquitto or openssl is not installed")
    tls = make_tls_files(tmp_path / "tls")
    broker = Mosquitto(workdir=tmp_path / "broker", tls=tls).start()
    try:
        assert broker.url.startswith("mqtts://")
        refused = Daemon.open(bus_config(home, broker, ca_file=str(tls.ca)), schedule=False,
                              baseline_dir=baseline)
        try:
            time.sleep(2.0)
            assert not refused.bus_status().connected  # no client certificate: no session
        finally:
            refused.close()
        daemon = open_daemon(home, broker, baseline, ca_file=str(tls.ca),
                             cert_file=str(tls.client_cert), key_file=str(tls.client_key))
        try:
            rig = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="rig-tls")
            rig.tls_set(ca_certs=str(tls.ca), certfile=str(tls.client_cert),
                        keyfile=str(tls.client_key))
            got: list[dict] = []
            rig.on_message = lambda c, u, m: got.append(json.loads(m.payload))
            rig.connect(broker.host, broker.port)
            rig.subscribe(f"{ROOT}/+/+/{MqttConfig().keypoints_suffix}", 1)
            rig.loop_start()
            msgs = hole(synthetic(97), 970, 0)
            for kind in ("result", "trace"):
                rig.publish(*msgs[kind], qos=1).wait_for_publish(timeout=10)
            wait_for(lambda: bool(got), what="an answer over TLS")
            assert got[0]["ResultId"] == "970" and "Error" not in got[0]
            rig.disconnect()
            rig.loop_stop()
        finally:
            daemon.close()
    finally:
        broker.close()
