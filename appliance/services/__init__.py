"""Domain services both front doors call: the daemon's controllers and the CLI verbs (no
HTTP here), so audit, locking and validation are written once.

- daemon.Daemon: opens the store once, holds serving, jobs and the nightly schedule.
- intake: the one ingest (files and folders for `appliance ingest`, an upload's bytes for
  POST /holes and watched folders): duplicates, quarantine, group commits.
- holes.HoleService: ingest bytes -> store + estimate; listing, traces, labels.
- labels: an operator's label stored with the estimate it confirms, and audited.
- keys: API keys (created once, stored hashed), made and revoked with an audit entry.
- backup: a consistent copy of the home, and its restore.
- downsample.minmax_indices: plotting-friendly downsampling that keeps extremes.
- metrics.Metrics: the daemon's Prometheus registry behind GET /metrics (counters kept in
  memory, the daemon's state read at scrape time).
"""
