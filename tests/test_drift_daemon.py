"""The drift watch inside a real daemon: holes uploaded over the API raise an alarm after a
current step, the alarm survives a restart (replayed from the store), an operator resets it
(audited), the drill's holes lead the review queue, a drill in alarm with enough confirmed
holes calls for a fine-tune, the alarm is published on the MQTT bus, and live accuracy
follows what operators confirm."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from litestar.testing import TestClient
from model_fixtures import build_model_folder
from mqtt_broker import Mosquitto
from paho.mqtt.enums import CallbackAPIVersion
from test_api_support import add_key, running_daemon
from test_drift import drill_specs

from api.app import create_app
from appliance.config import load_config
from appliance.ingest.setitec_writer import write_setitec
from appliance.services.daemon import Daemon
from appliance.synth import synthesize

LEARN, AFTER = 36, 24  # holes before the step, holes after it (the monitor learns on 30)
HEADERS = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    return build_model_folder(tmp_path / "shipped", "fixture-base")


def drill_logs(drill: str, factor_after: float, seed: int = 7) -> list[tuple[str, bytes]]:
    """One drill's holes as Setitec logs; every current ×factor_after after LEARN holes."""
    out = []
    for i, spec in enumerate(drill_specs(seed, LEARN + AFTER)):
        gain = spec.current_gain * (factor_after if i >= LEARN else 1.0)
        trace = synthesize(replace(spec, current_gain=gain)).trace
        trace = replace(trace, meta=replace(trace.meta, drill_serial=drill))
        out.append((f"{drill}-{i:03d}.xls", write_setitec(trace)))
    return out


@contextmanager
def reopened(home: Path, baseline: Path, key_name: str
             ) -> Iterator[tuple[Daemon, TestClient, dict[str, str]]]:
    """The daemon of an existing home again, with a key of its own."""
    daemon = Daemon.open(load_config(home), schedule=False, baseline_dir=baseline)
    try:
        key = add_key(daemon, key_name)
        with TestClient(create_app(daemon)) as client:
            yield daemon, client, {"Authorization": f"Bearer {key}"}
    finally:
        daemon.close()


def upload(client, headers: dict[str, str], logs: list[tuple[str, bytes]]) -> list[str]:  # noqa: ANN001
    ids = []
    for name, data in logs:
        r = client.post("/holes", params={"source": name}, content=data,
                        headers={**headers, **HEADERS})
        assert r.status_code in (200, 201), r.text
        ids.append(r.json()["hole"]["id"])
    return ids


def test_a_current_step_raises_an_alarm_that_survives_a_restart_until_reset(
        home: Path, baseline: Path) -> None:
    logs = drill_logs("D-STEP", 1.5)
    with running_daemon(home, baseline) as (daemon, client, headers):
        upload(client, headers, logs[:LEARN])
        (drill,) = client.get("/drift", headers=headers).json()["drills"]
        assert drill["drill"] == "D-STEP" and drill["state"] == "ok"
        assert drill["holes"] == LEARN and drill["alarm_at_hole"] is None
        ids = upload(client, headers, logs[LEARN:])
        (drill,) = client.get("/drift", headers=headers).json()["drills"]
        assert drill["state"] == "alarm", drill
        assert LEARN < drill["alarm_at_hole"] <= LEARN + 15 and drill["since"]
        assert any(s["state"] == "alarm" for s in drill["signals"])
        # the drill's holes lead the queue, ahead of any other drill's
        other = drill_logs("D-CALM", 1.0, seed=8)[:3]
        calm = upload(client, headers, other)
        queue = client.get("/holes", params={"status": "needs-review", "limit": 1000},
                           headers=headers).json()["items"]
        order = [h["id"] for h in queue]
        assert max(order.index(h) for h in ids) < min(order.index(h) for h in calm)
        only = client.get("/holes", params={"status": "needs-review", "drill": "D-CALM"},
                          headers=headers).json()
        assert only["total"] == 3 and {h["id"] for h in only["items"]} == set(calm)
    with reopened(home, baseline, "again") as (daemon, client, headers):
        drills = {d["drill"]: d for d in client.get("/drift", headers=headers).json()["drills"]}
        assert drills["D-STEP"]["state"] == "alarm"  # replayed, not forgotten
        assert drills["D-STEP"]["holes"] == LEARN + AFTER
        r = client.post("/drift/D-STEP/reset", headers=headers)
        assert r.status_code == 200 and r.json()["state"] == "learning"
        assert r.json()["holes"] == LEARN + AFTER and r.json()["alarm_at_hole"] is None
        assert client.post("/drift/NOPE/reset", headers=headers).status_code == 404
        audit = client.get("/audit", headers=headers).json()
        assert any(a["action"] == "drift-reset" and a["subject"] == "D-STEP" for a in audit)
    with reopened(home, baseline, "third") as (daemon, client, headers):
        drills = {d["drill"]: d for d in client.get("/drift", headers=headers).json()["drills"]}
        assert drills["D-STEP"]["state"] == "learning"  # the reset is replayed too


def test_a_drill_in_alarm_calls_for_a_fine_tune_once_enough_holes_are_confirmed(
        home: Path, baseline: Path) -> None:
    (home / "appliance.toml").write_text(
        "[nightly]\nmin_new_labels = 1000\nmin_labels_after_drift = 3\n")
    with running_daemon(home, baseline) as (daemon, client, headers):
        ids = upload(client, headers, drill_logs("D-STEP", 1.5))
        assert daemon.drift.alarmed()
        assert daemon._drift_reason() is None  # nothing confirmed since the alarm yet
        confirmed = 0
        for hole_id in ids[LEARN:]:
            if daemon.store.is_exam(hole_id):
                continue  # exam holes never train: they do not count
            est = client.get(f"/holes/{hole_id}/estimate", headers=headers).json()
            body = {k: est[k] for k in ("entry_mm", "transition_mm", "exit_mm")}
            r = client.put(f"/holes/{hole_id}/label", json={**body, "by": "op"},
                           headers=headers)
            assert r.status_code in (200, 201), r.text
            confirmed += 1
            if confirmed == 3:
                break
        reason = daemon._drift_reason()
        assert reason is not None and "D-STEP" in reason and "3 of its holes" in reason


def test_live_accuracy_follows_what_operators_confirm(home: Path, baseline: Path) -> None:
    with running_daemon(home, baseline) as (daemon, client, headers):
        assert client.get("/models/active", headers=headers).json()["live_accuracy"] is None
        ids = upload(client, headers, drill_logs("D-ACC", 1.0)[:6])
        errors = []
        for i, hole_id in enumerate(ids):
            est = client.get(f"/holes/{hole_id}/estimate", headers=headers).json()
            shift = 0.1 * (i + 1)  # the operator moves the exit deeper, more each time
            body = {"entry_mm": est["entry_mm"], "transition_mm": est["transition_mm"],
                    "exit_mm": None if est["exit_mm"] is None else est["exit_mm"] + shift,
                    "by": "op"}
            assert client.put(f"/holes/{hole_id}/label", json=body,
                              headers=headers).status_code in (200, 201)
            if est["exit_mm"] is not None:
                errors.append(shift)
        live = client.get("/models/active", headers=headers).json()["live_accuracy"]
        assert live["model_version"] == "fixture-base" and live["confirmed"] == 6
        last50 = next(w for w in live["windows"] if w["window"] == 50)
        assert last50["holes"] == 6 and last50["presence_accuracy"] == 1.0
        assert last50["entry_mae_mm"] == pytest.approx(0.0, abs=1e-9)
        assert last50["exit_mae_mm"] == pytest.approx(sum(errors) / len(errors), abs=1e-6)


def test_an_alarm_is_published_on_the_bus(home: Path, baseline: Path,
                                          mosquitto: Mosquitto) -> None:
    got: list[tuple[str, dict]] = []
    lock = threading.Lock()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with lock:
            got.append((msg.topic, json.loads(msg.payload)))

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="scada")
    sub.on_message = on_message
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe("OPCPUBSUB/Appliance.DriftAlarm/#", 1)
    sub.loop_start()
    cfg = load_config(home)
    daemon = Daemon.open(replace(cfg, mqtt=replace(cfg.mqtt, url=mosquitto.url)),
                         schedule=False, baseline_dir=baseline)
    try:
        deadline = time.monotonic() + 20
        while not daemon.bus_status().connected:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for name, data in drill_logs("D-BUS", 1.5):
            daemon.holes.ingest(data, name, None)
        assert daemon.drift.alarmed()
        deadline = time.monotonic() + 10
        while not got:
            assert time.monotonic() < deadline, "no alarm published"
            time.sleep(0.05)
        topic, body = got[0]
        assert topic == "OPCPUBSUB/Appliance.DriftAlarm/D-BUS"
        assert body["Drill"] == "D-BUS" and body["State"] == "alarm"
        assert body["AlarmAtHole"] > LEARN and body["Signals"]
    finally:
        daemon.close()
        sub.disconnect()
        sub.loop_stop()
