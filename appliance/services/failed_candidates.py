"""Candidates registered by jobs that then failed: set aside, then removed after a while.

A job records its candidate's version before registering it (appliance.jobs.runner), so a job
that fails afterwards (a gate crashed; the daemon died gating and the job could not resume)
names a registered, maybe half-gated candidate. It is set aside when the job ends (status
rejected, the job named in its gate report) and, [train] failed_candidate_keep_h after the job
ended, its folder is removed (the row stays, marked). The active model and any model that was
ever active are never touched: rollback goes back to those.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from appliance.errors import ApplianceError, NotFoundError
from appliance.records import Job
from appliance.store import Store

if TYPE_CHECKING:
    from appliance.registry.service import ServingService

log = logging.getLogger("appliance.daemon")

ENDED_BADLY = ("failed", "cancelled")


def set_aside(serving: ServingService, job: Job) -> bool:
    """The candidate of a job that ended badly, set aside; True when it was."""
    version = job.candidate_version
    if job.status not in ENDED_BADLY or not version or not _removable(serving, version):
        return False
    if serving.show(version).status == "rejected":  # by its gates, or set aside already
        return False
    serving.reject(version, f"registered by job {job.job_id}, which {job.status}: "
                            f"{job.error or 'no reason recorded'}")
    log.warning("candidate %s of %s job %s set aside", version, job.status, job.job_id)
    return True


def remove_expired(serving: ServingService, store: Store, keep_h: float,
                   now: datetime | None = None) -> list[str]:
    """Remove the candidates of jobs that ended badly more than keep_h ago; their versions."""
    cut = (now or datetime.now(UTC)) - timedelta(hours=keep_h)
    removed = []
    for status in ENDED_BADLY:
        for job in store.list_jobs(status=status):
            version = job.candidate_version
            ended = _utc(job.finished_at)
            if not version or ended is None or ended > cut:
                continue
            if not _removable(serving, version):
                continue
            why = (f"registered by job {job.job_id}, which {status} at "
                   f"{ended:%Y-%m-%dT%H:%M:%SZ}; removed after "
                   f"{keep_h:g} h ([train] failed_candidate_keep_h)")
            try:
                serving.reject(version, why, remove=True)
            except (ApplianceError, OSError) as exc:  # next start tries again
                log.error("could not remove candidate %s of job %s: %s", version,
                          job.job_id, exc)
                continue
            log.warning("candidate %s removed: %s", version, why)
            removed.append(version)
    return removed


def _utc(stamp: str | None) -> datetime | None:
    """A job's time (ISO 8601 UTC text) as an aware datetime."""
    if not stamp:
        return None
    value = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _removable(serving: ServingService, version: str) -> bool:
    """Registered, not removed yet, neither active nor ever active nor in shadow."""
    try:
        row = serving.show(version)
    except NotFoundError:
        return False
    removed = row.gate_report is not None and row.gate_report.removed is not None
    return not (removed or row.status == "active" or serving.ever_active(version)
                or serving.shadow_version == version)
