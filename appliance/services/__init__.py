"""Domain services the daemon's controllers call (no HTTP here).

- daemon.Daemon: opens the store once, holds serving, jobs and the nightly schedule.
- holes.HoleService: ingest bytes -> store + estimate; listing, traces, labels.
- keys: API keys (created once, stored hashed).
- downsample.minmax_indices: plotting-friendly downsampling that keeps extremes.
- metrics.Metrics: the Prometheus counters behind GET /metrics.
"""
