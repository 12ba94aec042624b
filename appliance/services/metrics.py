"""GET /metrics with prometheus-client: request, estimate and job counters kept in process
memory, and the daemon's state (store, review queue, running job, active model, MQTT bus,
drift per drill, live accuracy) read when scraped.

Every daemon has its own CollectorRegistry, never the library's global one: tests open many
daemons in one process, and a metric registered twice in one registry is an error. Counters
restart with the daemon, as Prometheus expects of counters. The state is read by a collector
at scrape time rather than pushed into gauges by a thread, so a scrape never shows a figure
older than itself and an idle daemon does no work for it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from appliance.points import POINT_NAMES
from appliance.records import JOB_ENDED

if TYPE_CHECKING:
    from appliance.services.daemon import Daemon

__all__ = ["BUCKETS_S", "DaemonCollector", "Metrics"]

log = logging.getLogger("appliance.metrics")

# Request latencies run from a few ms (reads, cached estimates) to seconds (an upload burst
# waiting for the batcher, a gate run): these bounds resolve both ends.
BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DRIFT_STATES = ("learning", "ok", "alarm")
# live accuracy's name for estimates served without a model (see DriftService.live_accuracy)
RULE_BASED = "rule-based"


class Metrics:
    """The daemon's registry and its in-memory counters; `watch(daemon)` adds the state read
    at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "appliance_requests", "HTTP requests by method, route template and status.",
            ["method", "route", "status"], registry=self.registry)
        self._latency = Histogram(
            "appliance_request_duration_seconds", "HTTP request latency by route template.",
            ["route"], buckets=BUCKETS_S, registry=self.registry)
        self._estimates = Counter(
            "appliance_estimates", "Depth estimates served, by estimator.", ["estimator"],
            registry=self.registry)
        self._jobs = Counter(
            "appliance_jobs", "Training jobs finished, by outcome.", ["outcome"],
            registry=self.registry)
        self._auth_failures = Counter(
            "appliance_auth_failures", "Requests refused for a wrong API key, and requests "
            "refused while their client was held back after too many of them.", ["outcome"],
            registry=self.registry)
        for outcome in ("wrong_key", "held_back"):
            self._auth_failures.labels(outcome)
        # every outcome is exported from the start, so rate() and increase() see the first
        # failed job as a step from 0 rather than as a series that appeared
        for outcome in JOB_ENDED:
            self._jobs.labels(outcome)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self._requests.labels(method, route, str(status)).inc()
        self._latency.labels(route).observe(seconds)

    def count_estimate(self, estimator: str) -> None:
        self._estimates.labels(estimator).inc()

    def count_job(self, outcome: str) -> None:
        self._jobs.labels(outcome).inc()

    def count_auth_failure(self, outcome: str) -> None:
        self._auth_failures.labels(outcome).inc()

    def watch(self, daemon: Daemon) -> None:
        """Export `daemon`'s state at every scrape (once, when the daemon is built)."""
        self.registry.register(DaemonCollector(daemon))

    def exposition(self) -> bytes:
        """The Prometheus text exposition (served as prometheus_client.CONTENT_TYPE_LATEST)."""
        return _generate_latest(self.registry)


class DaemonCollector:
    """Reads the daemon's state when scraped. Each part is read on its own: a part that fails
    (a store closing at shutdown, a bus mid-reconnect) is logged and left out of that scrape
    instead of failing the whole scrape, and the series that vanish say which part it was."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    def collect(self) -> Iterator[Metric]:
        parts: tuple[Callable[[], Iterable[Metric]], ...] = (
            self._store, self._serving, self._bus, self._drift, self._live_accuracy)
        for part in parts:
            try:
                # built whole before yielding: a part that fails halfway exports nothing
                yield from list(part())
            except Exception:
                log.exception("metrics: reading %s failed; left out of this scrape",
                              part.__name__.strip("_"))

    def _store(self) -> Iterator[Metric]:
        store = self._daemon.store
        holes = store.count_holes()
        labelled = store.count_holes(labelled=True)
        yield GaugeMetricFamily("appliance_holes", "Holes in the store.", holes)
        yield GaugeMetricFamily("appliance_labelled_holes",
                                "Holes in the store with a confirmed label.", labelled)
        yield GaugeMetricFamily("appliance_review_queue_holes",
                                "Holes waiting for an operator's label (the review queue).",
                                store.count_holes(labelled=False))
        size = GaugeMetricFamily(
            "appliance_store_size_bytes",
            "Size on disk of the DuckDB store: the database file and its write-ahead log.",
            labels=["file"])
        path = Path(store.path)
        # the WAL holds up to the checkpoint threshold (64 MB) of commits not yet in the file
        for file, p in (("database", path), ("wal", path.with_name(path.name + ".wal"))):
            size.add_metric([file], _file_size(p))
        yield size

    def _serving(self) -> Iterator[Metric]:
        daemon = self._daemon
        yield GaugeMetricFamily("appliance_job_running",
                                "1 while a training job runs, else 0.",
                                1.0 if daemon.jobs.running() else 0.0)
        active = daemon.models.active_version()
        info = InfoMetricFamily("appliance_active_model",
                                "The model version serving estimates (none: the rule-based "
                                "estimator).", labels=["version", "estimator"])
        info.add_metric([active or "none", "ensemble" if active else "heuristic"], {})
        yield info

    def _bus(self) -> Iterator[Metric]:
        bus = self._daemon.bus_status()
        if not bus.enabled:  # no bridge configured: no series, rather than zeros that alarm
            return
        yield GaugeMetricFamily("appliance_mqtt_connected",
                                "1 while connected to the rig's MQTT broker, else 0.",
                                1.0 if bus.connected else 0.0)
        yield GaugeMetricFamily("appliance_mqtt_pending_messages",
                                "MQTT messages stored and waiting for their partner message.",
                                bus.pending)
        yield GaugeMetricFamily("appliance_mqtt_unpublished_answers",
                                "Answers not yet acknowledged by the MQTT broker.",
                                bus.unpublished)
        yield CounterMetricFamily("appliance_mqtt_reconnects",
                                  "Reconnections to the MQTT broker since the daemon started.",
                                  bus.reconnects)
        # a gauge, not a counter: the store totals among them count rows the inbox's expiry
        # may remove, and a counter must never go down
        counts = GaugeMetricFamily(
            "appliance_mqtt_messages",
            "MQTT bus totals by outcome, as GET /mqtt counts them (store totals; "
            "*_since_start since the daemon started).", labels=["outcome"])
        for outcome, n in sorted(bus.counts.items()):
            counts.add_metric([outcome], n)
        yield counts

    def _drift(self) -> Iterator[Metric]:
        drills = self._daemon.drift.drills()
        alarm = GaugeMetricFamily("appliance_drift_alarm",
                                  "1 while the drill is in drift alarm (until an operator "
                                  "resets it), else 0.", labels=["drill"])
        state = GaugeMetricFamily("appliance_drift_state",
                                  "The drill's drift state: 1 for the current one of "
                                  "learning, ok and alarm, 0 for the others.",
                                  labels=["drill", "state"])
        holes = GaugeMetricFamily("appliance_drift_holes",
                                  "The drill's holes seen by the drift watch, in arrival "
                                  "order, resets included.", labels=["drill"])
        since = GaugeMetricFamily("appliance_drift_alarm_since_timestamp_seconds",
                                  "When the hole that raised the drill's current alarm was "
                                  "drilled (Unix time).", labels=["drill"])
        statistic = GaugeMetricFamily("appliance_drift_statistic",
                                      "The CUSUM statistic of a drill's drift signal "
                                      "(reference-sd units; 0 while learning).",
                                      labels=["drill", "signal"])
        threshold = GaugeMetricFamily("appliance_drift_threshold",
                                      "The statistic above which a drift signal alarms.",
                                      labels=["drill", "signal"])
        signal_alarm = GaugeMetricFamily("appliance_drift_signal_alarm",
                                         "1 when this signal is in alarm, else 0.",
                                         labels=["drill", "signal"])
        for d in drills:
            alarm.add_metric([d.drill], 1.0 if d.state == "alarm" else 0.0)
            for s in DRIFT_STATES:
                state.add_metric([d.drill, s], 1.0 if d.state == s else 0.0)
            holes.add_metric([d.drill], d.holes)
            at = _unix_time(d.since)
            if at is not None:
                since.add_metric([d.drill], at)
            for sig in d.signals:
                # None: the signal has no reading yet; a missing sample says so to PromQL,
                # where a NaN would compare false with every threshold silently
                if sig.statistic is not None and math.isfinite(sig.statistic):
                    statistic.add_metric([d.drill, sig.name], sig.statistic)
                threshold.add_metric([d.drill, sig.name], sig.threshold)
                signal_alarm.add_metric([d.drill, sig.name],
                                        1.0 if sig.state == "alarm" else 0.0)
        yield from (alarm, state, holes, since, statistic, threshold, signal_alarm)

    def _live_accuracy(self) -> Iterator[Metric]:
        active = self._daemon.models.active_version() or RULE_BASED
        confirmed = GaugeMetricFamily("appliance_live_confirmed_holes",
                                      "Confirmed labels on estimates of the active model.",
                                      labels=["version"])
        window_holes = GaugeMetricFamily("appliance_live_window_holes",
                                         "Confirmed holes in each live accuracy window (the "
                                         "last N confirmations) of the active model.",
                                         labels=["version", "window"])
        mae = GaugeMetricFamily("appliance_live_mae_mm",
                                "The active model's mean absolute error per depth point over "
                                "the last N holes operators confirmed.",
                                labels=["version", "window", "point"])
        presence = GaugeMetricFamily("appliance_live_presence_accuracy_ratio",
                                     "Share of the last N confirmed holes whose three point "
                                     "presences the active model got right.",
                                     labels=["version", "window"])
        for acc in self._daemon.drift.live_accuracy():
            # earlier versions' figures are in GET /models/active; series per retired version
            # would only pile up in the time-series database
            if acc.model_version != active:
                continue
            confirmed.add_metric([active], acc.confirmed)
            for w in acc.windows:
                window = str(w.window)
                window_holes.add_metric([active, window], w.holes)
                for point in POINT_NAMES:
                    value = w.mae(point)
                    if value is not None:
                        mae.add_metric([active, window, point], value)
                if w.presence_accuracy is not None:
                    presence.add_metric([active, window], w.presence_accuracy)
        yield from (confirmed, window_holes, mae, presence)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # no WAL right after a checkpoint
        return 0


def _unix_time(iso: str | None) -> float | None:
    if iso is None:
        return None
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return None
    # the store keeps times in UTC without an offset
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
