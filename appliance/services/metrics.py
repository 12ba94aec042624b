"""Counters and latency histograms for GET /metrics, in the Prometheus text format.

Kept in process memory (they restart with the daemon, as Prometheus expects of counters);
figures that live in the store (holes, labels, active version) are read when scraped.
"""

from __future__ import annotations

import threading
from collections import defaultdict

BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._latency: dict[str, list[int]] = {}
        self._latency_sum: dict[str, float] = defaultdict(float)
        self._latency_count: dict[str, int] = defaultdict(int)
        self._estimates: dict[str, int] = defaultdict(int)
        self._jobs: dict[str, int] = defaultdict(int)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, str(status))] += 1
            counts = self._latency.setdefault(route, [0] * len(BUCKETS_S))
            for i, bound in enumerate(BUCKETS_S):
                if seconds <= bound:
                    counts[i] += 1
            self._latency_sum[route] += seconds
            self._latency_count[route] += 1

    def count_estimate(self, estimator: str) -> None:
        with self._lock:
            self._estimates[estimator] += 1

    def count_job(self, outcome: str) -> None:
        with self._lock:
            self._jobs[outcome] += 1

    def render(self, gauges: dict[str, float], active_version: str | None) -> str:
        """The exposition text; `gauges` are store figures named `appliance_<name>`."""
        out: list[str] = []
        with self._lock:
            out += ["# HELP appliance_requests_total HTTP requests by method, route and status.",
                    "# TYPE appliance_requests_total counter"]
            for (method, route, status), n in sorted(self._requests.items()):
                out.append(f'appliance_requests_total{{method="{method}",route="{_esc(route)}",'
                           f'status="{status}"}} {n}')
            out += ["# HELP appliance_request_duration_seconds Request latency by route.",
                    "# TYPE appliance_request_duration_seconds histogram"]
            for route, counts in sorted(self._latency.items()):
                r = _esc(route)
                for bound, n in zip(BUCKETS_S, counts, strict=True):
                    out.append(f'appliance_request_duration_seconds_bucket{{route="{r}",'
                               f'le="{bound}"}} {n}')
                total = self._latency_count[route]
                out.append(f'appliance_request_duration_seconds_bucket{{route="{r}",le="+Inf"}} '
                           f"{total}")
                out.append(f'appliance_request_duration_seconds_sum{{route="{r}"}} '
                           f"{self._latency_sum[route]:.6f}")
                out.append(f'appliance_request_duration_seconds_count{{route="{r}"}} {total}')
            out += ["# HELP appliance_estimates_total Depth estimates served, by estimator.",
                    "# TYPE appliance_estimates_total counter"]
            for estimator, n in sorted(self._estimates.items()):
                out.append(f'appliance_estimates_total{{estimator="{_esc(estimator)}"}} {n}')
            out += ["# HELP appliance_jobs_total Training jobs finished, by outcome.",
                    "# TYPE appliance_jobs_total counter"]
            for outcome, n in sorted(self._jobs.items()):
                out.append(f'appliance_jobs_total{{outcome="{_esc(outcome)}"}} {n}')
        for name, value in sorted(gauges.items()):
            out += [f"# TYPE appliance_{name} gauge", f"appliance_{name} {value:g}"]
        out += ["# HELP appliance_active_model_info The model version serving estimates.",
                "# TYPE appliance_active_model_info gauge",
                f'appliance_active_model_info{{version="{_esc(active_version or "none")}"}} 1']
        return "\n".join(out) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
