"""Domain services the daemon's controllers call (no HTTP here).

- daemon.Daemon: opens the store once, holds serving, jobs and the nightly schedule.
- holes.HoleService: ingest bytes -> store + estimate; listing, traces, labels.
- keys: API keys (created once, stored hashed).
- downsample.minmax_indices: plotting-friendly downsampling that keeps extremes.
- metrics.Metrics: the daemon's Prometheus registry behind GET /metrics (counters kept in
  memory, the daemon's state read at scrape time).
"""
