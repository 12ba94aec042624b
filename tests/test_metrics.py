"""GET /metrics: the exposition of a real daemon read back with prometheus-client's own parser.

Requests, estimates and holes counted as they happen, drift per drill and live accuracy as
GET /drift and GET /models/active report them, the MQTT bus once a real broker is connected,
one registry per daemon; and, with a stand-in daemon, what is left out (NaN statistics, None
accuracies, retired model versions, a disabled bus, a part that fails to read).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import prometheus_client
import pytest
from litestar.testing import TestClient
from mqtt_broker import Mosquitto
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from test_api_support import (  # noqa: F401  (fixture)
    fixture_baseline,
    ingest,
    running_daemon,
    synth_files,
)
from test_drift_daemon import LEARN, drill_logs, upload

from appliance.config import load_config
from appliance.monitor import DrillDrift
from appliance.records import BusStatus, DriftSignal, LiveAccuracy, WindowAccuracy
from appliance.services.daemon import Daemon
from appliance.services.metrics import BUCKETS_S, DaemonCollector

OCTET = {"Content-Type": "application/octet-stream"}


class Exposition:
    """One scrape, parsed: samples by name and labels, families by name."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: list[Sample] = [s for f in self.families.values() for s in f.samples]

    def value(self, name: str, **labels: str) -> float | None:
        found = [s.value for s in self.samples if s.name == name and s.labels == labels]
        assert len(found) <= 1, (name, labels, found)
        return found[0] if found else None

    def labelled(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name]


def scrape(client: TestClient, headers: dict[str, str]) -> Exposition:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == CONTENT_TYPE_LATEST
    return Exposition(r.text)


def test_requests_estimates_holes_and_store(tmp_path: Path, fixture_baseline: Path) -> None:  # noqa: F811
    with running_daemon(tmp_path / "home", fixture_baseline) as (daemon, client, h):
        assert daemon.metrics.registry is not prometheus_client.REGISTRY
        before = scrape(client, h)
        # no request yet but this scrape's own (counted once it has answered)
        assert before.labelled("appliance_requests_total") == []
        assert before.value("appliance_holes") == 0
        assert before.value("appliance_jobs_total", outcome="failed") == 0
        ids = ingest(client, h, synth_files(3, seed=23))
        for _ in range(2):
            assert client.get("/health/details", headers=h).status_code == 200
        assert client.get(f"/holes/{ids[0]}", headers=h).status_code == 200
        assert client.get("/holes/0123456789abcdef", headers=h).status_code == 404
        assert client.get("/health/details").status_code == 401  # refused, yet counted
        name, data, truth = synth_files(1, seed=24)[0]
        estimated = before.value("appliance_estimates_total", estimator="ensemble") or 0.0
        assert client.post("/estimate", content=data, headers={**h, **OCTET}).status_code == 200
        r = client.put(f"/holes/{ids[1]}/label", headers=h, json={**truth.as_dict(), "by": "op"})
        assert r.status_code in (200, 201), r.text

        m = scrape(client, h)
        req = "appliance_requests_total"
        assert m.value(req, method="POST", route="/holes", status="201") == 3
        assert m.value(req, method="GET", route="/health/details", status="200") == 2
        assert m.value(req, method="GET", route="/metrics", status="200") == 1  # `before`
        # labelled by route template, not by path: one series for every hole id
        holes_route = [s for s in m.labelled(req)
                       if s.labels["method"] == "GET" and s.labels["route"].startswith("/holes/")]
        assert {(s.labels["status"], s.value) for s in holes_route} == {("200", 1), ("404", 1)}
        assert "{hole_id" in holes_route[0].labels["route"] and ids[0] not in str(holes_route)
        assert m.value(req, method="GET", route="/health/details", status="401") == 1

        lat = "appliance_request_duration_seconds"
        assert m.value(f"{lat}_count", route="/holes") == 3
        assert m.value(f"{lat}_sum", route="/holes") > 0
        buckets = [s for s in m.labelled(f"{lat}_bucket") if s.labels["route"] == "/holes"]
        assert [float(s.labels["le"]) for s in buckets] == [*BUCKETS_S, math.inf]
        assert buckets[-1].value == 3
        assert [s.value for s in buckets] == sorted(s.value for s in buckets)  # cumulative

        # three uploads and one POST /estimate, each estimated once by the active ensemble
        assert m.value("appliance_estimates_total", estimator="ensemble") == estimated + 4
        assert m.value("appliance_holes") == 3
        assert m.value("appliance_labelled_holes") == 1
        assert m.value("appliance_review_queue_holes") == 2
        assert m.value("appliance_review_queue_holes") == daemon.store.count_holes(
            labelled=False)
        assert m.value("appliance_store_size_bytes", file="database") > 0
        assert m.value("appliance_store_size_bytes", file="wal") >= 0
        assert m.value("appliance_job_running") == 0
        assert {s.labels["outcome"]: s.value for s in m.labelled("appliance_jobs_total")} == {
            "succeeded": 0, "failed": 0, "cancelled": 0}
        assert m.value("appliance_active_model_info", version="fixture-base",
                       estimator="ensemble") == 1
        assert not any(n.startswith("appliance_mqtt") for n in m.families)  # no bridge

        # conventions: every family ours, documented, units spelled out
        for family in m.families.values():
            assert family.name.startswith("appliance_"), family.name
            assert family.documentation.strip(), family.name
        for unit_name in ("appliance_request_duration_seconds", "appliance_store_size_bytes",
                          "appliance_live_mae_mm"):
            assert unit_name in m.families


def test_each_daemon_counts_on_its_own(tmp_path: Path, fixture_baseline: Path) -> None:  # noqa: F811
    with (running_daemon(tmp_path / "a", fixture_baseline) as (_, client_a, ha),
          running_daemon(tmp_path / "b", fixture_baseline) as (_, client_b, hb)):
        ingest(client_a, ha, synth_files(2, seed=25))
        a, b = scrape(client_a, ha), scrape(client_b, hb)
        assert a.value("appliance_requests_total", method="POST", route="/holes",
                       status="201") == 2
        assert b.value("appliance_requests_total", method="POST", route="/holes",
                       status="201") is None
        assert (a.value("appliance_holes"), b.value("appliance_holes")) == (2, 0)
        # whatever warming up at start counts, it counts the same in both
        assert ((a.value("appliance_estimates_total", estimator="ensemble") or 0)
                - (b.value("appliance_estimates_total", estimator="ensemble") or 0)) == 2


def test_drift_and_live_accuracy_as_the_api_reports_them(
        tmp_path: Path, fixture_baseline: Path) -> None:  # noqa: F811
    with running_daemon(tmp_path / "home", fixture_baseline) as (daemon, client, h):
        # a learning drill first: state gauges one-hot, every signal's threshold exported
        upload(client, h, drill_logs("D-CALM", 1.0)[:5])
        m = scrape(client, h)
        assert m.value("appliance_drift_holes", drill="D-CALM") == 5
        assert m.value("appliance_drift_alarm", drill="D-CALM") == 0
        assert {s.labels["state"]: s.value for s in m.labelled("appliance_drift_state")
                if s.labels["drill"] == "D-CALM"} == {"learning": 1, "ok": 0, "alarm": 0}
        assert m.value("appliance_drift_alarm_since_timestamp_seconds", drill="D-CALM") is None

        # every current ×1.5 after LEARN holes: the drill alarms
        ids = upload(client, h, drill_logs("D-STEP", 1.5))
        drift = {d["drill"]: d for d in client.get("/drift", headers=h).json()["drills"]}
        step = drift["D-STEP"]
        assert step["state"] == "alarm" and step["alarm_at_hole"] > LEARN
        m = scrape(client, h)
        assert m.value("appliance_drift_alarm", drill="D-STEP") == 1
        assert m.value("appliance_drift_state", drill="D-STEP", state="alarm") == 1
        assert m.value("appliance_drift_state", drill="D-STEP", state="ok") == 0
        assert m.value("appliance_drift_holes", drill="D-STEP") == step["holes"] == len(ids)
        since = m.value("appliance_drift_alarm_since_timestamp_seconds", drill="D-STEP")
        assert since is not None and since > 0
        for sig in step["signals"]:
            labels = {"drill": "D-STEP", "signal": sig["name"]}
            assert m.value("appliance_drift_threshold", **labels) == sig["threshold"]
            assert m.value("appliance_drift_signal_alarm", **labels) == (
                1 if sig["state"] == "alarm" else 0)
            if sig["statistic"] is not None and math.isfinite(sig["statistic"]):
                assert m.value("appliance_drift_statistic", **labels) == pytest.approx(
                    sig["statistic"])
        alarmed = [s for s in step["signals"] if s["state"] == "alarm"]
        assert alarmed and all(
            m.value("appliance_drift_statistic", drill="D-STEP", signal=s["name"])
            > s["threshold"] for s in alarmed)

        # nothing confirmed yet: no live accuracy series
        assert m.labelled("appliance_live_mae_mm") == []
        # operators confirm six holes, moving the exit deeper each time
        for i, hole_id in enumerate(ids[:6]):
            est = client.get(f"/holes/{hole_id}/estimate", headers=h).json()
            body = {"entry_mm": est["entry_mm"], "transition_mm": est["transition_mm"],
                    "exit_mm": None if est["exit_mm"] is None else est["exit_mm"] + 0.1 * (i + 1),
                    "by": "op"}
            assert client.put(f"/holes/{hole_id}/label", json=body,
                              headers=h).status_code in (200, 201)
        live = client.get("/models/active", headers=h).json()["live_accuracy"]
        assert live["model_version"] == "fixture-base" and live["confirmed"] == 6
        m = scrape(client, h)
        assert m.value("appliance_live_confirmed_holes", version="fixture-base") == 6
        for w in live["windows"]:
            window = str(w["window"])
            assert m.value("appliance_live_window_holes", version="fixture-base",
                           window=window) == w["holes"] == 6
            for point in ("entry", "transition", "exit"):
                got = m.value("appliance_live_mae_mm", version="fixture-base", window=window,
                              point=point)
                want = w[f"{point}_mae_mm"]
                assert got == (None if want is None else pytest.approx(want))
            assert m.value("appliance_live_presence_accuracy_ratio", version="fixture-base",
                           window=window) == pytest.approx(w["presence_accuracy"])
        exit50 = m.value("appliance_live_mae_mm", version="fixture-base", window="50",
                         point="exit")
        assert exit50 is not None and exit50 > 0.05  # the operators' corrections show
        assert daemon.drift.alarmed()


def test_mqtt_bus_counts_once_connected(tmp_path: Path, fixture_baseline: Path,  # noqa: F811
                                        mosquitto: Mosquitto) -> None:
    cfg = load_config(tmp_path / "home")
    daemon = Daemon.open(replace(cfg, mqtt=replace(cfg.mqtt, url=mosquitto.url)),
                         schedule=False, baseline_dir=fixture_baseline)
    try:
        deadline = time.monotonic() + 20
        while not daemon.bus_status().connected:
            assert time.monotonic() < deadline, "the bridge never connected"
            time.sleep(0.05)
        m = Exposition(daemon.metrics_exposition().decode())
        bus = daemon.bus_status()
        assert m.value("appliance_mqtt_connected") == 1
        assert m.value("appliance_mqtt_reconnects_total") == bus.reconnects
        assert m.value("appliance_mqtt_pending_messages") == bus.pending == 0
        assert m.value("appliance_mqtt_unpublished_answers") == bus.unpublished == 0
        counts = {s.labels["outcome"]: s.value for s in m.labelled("appliance_mqtt_messages")}
        assert counts == bus.counts and "paired_messages" in counts
    finally:
        daemon.close()


# -- what is left out, with a stand-in daemon ------------------------------------------------

def _stand_in(tmp_path: Path, *, bus: BusStatus, drills: list[DrillDrift],
              live: list[LiveAccuracy], active: str | None) -> SimpleNamespace:
    path = tmp_path / "appliance.duckdb"
    path.write_bytes(b"x" * 100)
    store = SimpleNamespace(path=path, count_holes=lambda labelled=None: {
        None: 7, True: 3, False: 4}[labelled])
    return SimpleNamespace(
        store=store, jobs=SimpleNamespace(running=lambda: {"job_id": "j1"}),
        models=SimpleNamespace(active_version=lambda: active), bus_status=lambda: bus,
        drift=SimpleNamespace(drills=lambda: drills, live_accuracy=lambda: live))


def _expose(daemon: SimpleNamespace) -> Exposition:
    registry = CollectorRegistry()
    registry.register(DaemonCollector(daemon))  # type: ignore[arg-type]
    return Exposition(generate_latest(registry).decode())


def test_nan_none_and_retired_versions_are_left_out(tmp_path: Path) -> None:
    drill = DrillDrift("D1", "alarm", 40, 37, "2026-03-04T05:06:07",
                       (DriftSignal("torque", 12.5, 10.0, "alarm"),
                        DriftSignal("residual_exit", None, 10.0, "learning")))
    windows = (WindowAccuracy(50, 4, 0.2, None, 0.4, None),
               WindowAccuracy(200, 4, 0.2, None, 0.4, 0.75))
    live = [LiveAccuracy("v-old", 9, (WindowAccuracy(50, 9, 1.0, 1.0, 1.0, 0.5),)),
            LiveAccuracy("v2", 4, windows)]
    bus = BusStatus(True, "mqtt://b", "c", False, None, None, 2, 1, 5,
                    {"paired_messages": 10, "expired_messages": 1})
    m = _expose(_stand_in(tmp_path, bus=bus, drills=[drill], live=live, active="v2"))

    assert (m.value("appliance_holes"), m.value("appliance_labelled_holes"),
            m.value("appliance_review_queue_holes")) == (7, 3, 4)
    assert m.value("appliance_store_size_bytes", file="database") == 100
    assert m.value("appliance_store_size_bytes", file="wal") == 0  # none on disk
    assert m.value("appliance_job_running") == 1
    assert m.value("appliance_drift_statistic", drill="D1", signal="torque") == 12.5
    assert m.value("appliance_drift_statistic", drill="D1", signal="residual_exit") is None
    assert m.value("appliance_drift_threshold", drill="D1", signal="residual_exit") == 10
    assert m.value("appliance_drift_alarm_since_timestamp_seconds", drill="D1") == (
        pytest.approx(1772600767.0))  # 2026-03-04T05:06:07 UTC
    assert m.value("appliance_live_mae_mm", version="v2", window="50", point="entry") == 0.2
    assert m.value("appliance_live_mae_mm", version="v2", window="50",
                   point="transition") is None
    assert m.value("appliance_live_presence_accuracy_ratio", version="v2", window="50") is None
    assert m.value("appliance_live_presence_accuracy_ratio", version="v2",
                   window="200") == 0.75
    assert all(s.labels["version"] == "v2" for n in ("appliance_live_mae_mm",
                                                      "appliance_live_confirmed_holes")
               for s in m.labelled(n))
    assert m.value("appliance_mqtt_connected") == 0
    assert m.value("appliance_mqtt_reconnects_total") == 5
    assert m.value("appliance_mqtt_messages", outcome="expired_messages") == 1

    off = BusStatus(False, None, None, False, None, None, 0, 0, 0, {})
    m = _expose(_stand_in(tmp_path, bus=off, drills=[], live=[], active=None))
    assert not any(n.startswith("appliance_mqtt") for n in m.families)
    assert m.value("appliance_active_model_info", version="none", estimator="heuristic") == 1


def test_a_part_that_fails_leaves_the_rest(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    off = BusStatus(False, None, None, False, None, None, 0, 0, 0, {})
    daemon = _stand_in(tmp_path, bus=off, drills=[], live=[], active="v1")

    def closed(labelled: bool | None = None) -> int:
        raise RuntimeError("store closed")

    daemon.store.count_holes = closed
    with caplog.at_level(logging.ERROR, logger="appliance.metrics"):
        m = _expose(daemon)
    assert "appliance_holes" not in m.families and "appliance_store_size_bytes" not in m.families
    assert m.value("appliance_active_model_info", version="v1", estimator="ensemble") == 1
    assert "reading store failed" in caplog.text
