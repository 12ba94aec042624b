"""A job as its clients see it (the API's answers, GET /health/details): what it says of the
box's filesystem scrubbed as appliance.redact shows it."""

from __future__ import annotations

from pathlib import Path

import msgspec

from appliance.records import Job
from appliance.redact import without_paths


def shown_job(job: Job, home: Path | None) -> Job:
    """The job with its error and log tail (a training child's words, tracebacks included)
    naming files relative to the home or by name, never by absolute path."""
    return msgspec.structs.replace(
        job, error=None if job.error is None else without_paths(job.error, home),
        log_tail=tuple(without_paths(line, home) for line in job.log_tail))
