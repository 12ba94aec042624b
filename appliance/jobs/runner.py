"""Training jobs: one at a time, in a child process, followed by a reader thread.

The daemon never trains in its own process: a dataset snapshot is written, then
`python -m appliance.cli train --dataset SNAP --out CAND --parent ACTIVE --progress-json` runs
as a child whose stdout lines are progress events (appliance.jobs.events) or log text. A child
that fails, is cancelled or is killed leaves the registry and the active model alone: only a
child that exits 0 and said "done" hands its candidate folder to `on_candidate` (register,
gates, maybe activate).
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from appliance.errors import ApplianceError
from appliance.jobs.events import fold_progress, parse_event

log = logging.getLogger("appliance.jobs")

TERMINAL = ("succeeded", "failed", "cancelled")
LOG_TAIL_LINES = 40


class JobConflictError(ApplianceError):
    """A job is already running: one at a time on this box."""


class JobRecords(Protocol):
    """Where jobs are persisted (the store's jobs table)."""

    def create(self, kind: str, params: dict[str, Any]) -> dict[str, Any]: ...
    def update(self, job_id: str, **fields: Any) -> dict[str, Any]: ...
    def get(self, job_id: str) -> dict[str, Any] | None: ...
    def list(self, limit: int = 50) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Prepared:
    """What a job needs before the child starts (built by the daemon, under its store lock)."""

    dataset_dir: Path
    parent_dir: Path | None
    parent_version: str | None
    dataset: dict[str, Any]  # the snapshot manifest (n_holes, content_hash, created_at, ...)
    architecture: str | None = None  # the parent's, used when the job names none


def now_iso() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def train_command(params: dict[str, Any], prep: Prepared, out_dir: Path) -> list[str]:
    cmd = [sys.executable, "-m", "appliance.cli", "train", "--dataset", str(prep.dataset_dir),
           "--out", str(out_dir), "--folds", str(params["folds"]),
           "--epochs", str(params["epochs"]), "--progress-json",
           # half the cores: the daemon keeps answering while a job trains
           "--threads", str(max(1, (os.cpu_count() or 2) // 2))]
    if prep.parent_dir is not None:
        cmd += ["--parent", str(prep.parent_dir)]
    if params.get("head_only"):
        cmd.append("--head-only")
    arch = params.get("architecture") or prep.architecture
    if arch:
        cmd += ["--arch", str(arch)]
    if params.get("seed") is not None:
        cmd += ["--seed", str(params["seed"])]
    return cmd


class JobRunner:
    """Starts, follows, cancels and recovers training jobs.

    prepare(job, work_dir) -> Prepared: snapshot + parent (raises ApplianceError to fail the job);
    on_candidate(job, candidate_dir) -> dict of result fields (candidate_version, gate_passed,
    activated, ...); on_finish(job) is told every terminal job (metrics).
    """

    def __init__(
        self,
        records: JobRecords,
        jobs_dir: Path,
        prepare: Callable[[dict[str, Any], Path], Prepared],
        on_candidate: Callable[[dict[str, Any], Path], dict[str, Any]],
        on_finish: Callable[[dict[str, Any]], None] = lambda job: None,
        command: Callable[[dict[str, Any], Prepared, Path], list[str]] = train_command,
    ) -> None:
        self._records = records
        self._jobs_dir = jobs_dir
        self._prepare = prepare
        self._on_candidate = on_candidate
        self._on_finish = on_finish
        self._command = command
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._current: dict[str, Any] | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._cancel_reason: str | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._versions: dict[str, int] = collections.defaultdict(int)

    # -- lifecycle ---------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Jobs a previous daemon left queued/running are failed now: never a ghost 'running'."""
        failed = []
        for job in self._records.list(limit=10_000):
            if job["status"] not in TERMINAL:
                self._records.update(job["job_id"], status="failed", finished_at=now_iso(),
                                     error="daemon restarted while the job was "
                                           f"{job['status']}; start it again")
                failed.append(job["job_id"])
        return failed

    def close(self, reason: str = "daemon stopped while the job was running") -> None:
        """Stop a running child and record why; waits for the job thread to finish."""
        with self._lock:
            thread = self._thread
            if self._current is not None and self._current["status"] not in TERMINAL:
                self._cancel_reason = reason
                self._terminate_locked()
        if thread is not None:
            thread.join(timeout=30)

    # -- queries -----------------------------------------------------------------------------
    def running(self) -> dict[str, Any] | None:
        with self._lock:
            if self._current is not None and self._current["status"] not in TERMINAL:
                return dict(self._current)
        return None

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            if self._current is not None and self._current["job_id"] == job_id:
                return dict(self._current)
        return self._records.get(job_id)

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        jobs = self._records.list(limit=limit)
        live = self.running()
        return [live if live and j["job_id"] == live["job_id"] else j for j in jobs]

    def version(self, job_id: str) -> int:
        """Bumped at every change of the job: lets event streams wait for news cheaply."""
        return self._versions[job_id]

    def wait_change(self, job_id: str, seen: int, timeout: float) -> int:
        with self._changed:
            self._changed.wait_for(lambda: self._versions[job_id] != seen, timeout=timeout)
            return self._versions[job_id]

    # -- commands ----------------------------------------------------------------------------
    def start(self, kind: str, params: dict[str, Any], actor: str) -> dict[str, Any]:
        with self._lock:
            if self._current is not None and self._current["status"] not in TERMINAL:
                cur = self._current
                raise JobConflictError(
                    f"job {cur['job_id']} ({cur['kind']}) is {cur['status']}; one job runs at a "
                    "time: wait for it or cancel it (DELETE /jobs/{id})")
            job = self._records.create(kind, {**params, "requested_by": actor})
            job = self._records.update(job["job_id"], status="queued", progress={},
                                       log_tail=[])
            self._current = dict(job)
            self._cancel_reason = None
            self._tail.clear()
            self._bump_locked(job["job_id"])
            self._thread = threading.Thread(target=self._run, args=(dict(job),),
                                            name=f"job-{job['job_id']}", daemon=True)
            self._thread.start()
            return dict(job)

    def cancel(self, job_id: str, actor: str) -> dict[str, Any]:
        with self._lock:
            cur = self._current
            if cur is None or cur["job_id"] != job_id or cur["status"] in TERMINAL:
                job = cur if cur is not None and cur["job_id"] == job_id else None
                job = job or self._records.get(job_id)
                if job is None:
                    raise KeyError(job_id)
                raise JobConflictError(f"job {job_id} is already {job['status']}")
            self._cancel_reason = f"cancelled by {actor}"
            self._terminate_locked()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30)
        job = self.get(job_id)
        assert job is not None
        return job

    # -- the job thread ----------------------------------------------------------------------
    def _run(self, job: dict[str, Any]) -> None:
        job_id = job["job_id"]
        work = self._jobs_dir / job_id
        out_dir = work / "candidate"
        try:
            work.mkdir(parents=True, exist_ok=True)
            self._set(job_id, status="running", started_at=now_iso())
            prep = self._prepare(job, work)
            self._set(job_id, progress={"fraction": 0.0, "dataset_hash":
                                        prep.dataset.get("content_hash"),
                                        "dataset_holes": prep.dataset.get("n_holes"),
                                        "dataset_at": prep.dataset.get("created_at"),
                                        "parent": prep.parent_version})
            if self._cancel_reason:
                raise _Stopped(self._cancel_reason)
            rc, last = self._follow(job, prep, out_dir, work / "train.log")
            if self._cancel_reason:
                raise _Stopped(self._cancel_reason)
            if rc != 0:
                raise ApplianceError(_exit_reason(rc, last, list(self._tail)))
            if last is None or last.get("event") != "done":
                raise ApplianceError("training exited without its 'done' event")
            if not (out_dir / "manifest.json").is_file():
                raise ApplianceError(f"training finished but wrote no candidate manifest in "
                                     f"{out_dir}")
            result = self._on_candidate(self.get(job_id) or job, out_dir)
            # registered: the registry holds its own sealed copy now
            shutil.rmtree(out_dir, ignore_errors=True)
            self._finish(job_id, "succeeded", None, result)
        except _Stopped as stop:
            self._finish(job_id, "cancelled" if str(stop).startswith("cancelled") else "failed",
                         str(stop), {})
        except ApplianceError as exc:
            self._finish(job_id, "failed", str(exc), {})
        except Exception as exc:  # a bug must still end the job clearly, never leave it running
            log.exception("job %s crashed", job_id)
            self._finish(job_id, "failed", f"internal error: {type(exc).__name__}: {exc}", {})
        finally:
            # the snapshot is large and reproducible from the store; the log is kept
            shutil.rmtree(work / "dataset", ignore_errors=True)

    def _follow(self, job: dict[str, Any], prep: Prepared, out_dir: Path,
                log_path: Path) -> tuple[int, dict[str, Any] | None]:
        params = job["params"]
        cmd = self._command(params, prep, out_dir)
        # warnings from the training stack would crowd the log tail an operator reads
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}
        with self._lock:
            if self._cancel_reason:
                raise _Stopped(self._cancel_reason)
            self._proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                env=env, cwd=str(out_dir.parent), preexec_fn=_die_with_parent,
                errors="replace")
            proc = self._proc
        self._set(job["job_id"], progress={**(self.get(job["job_id"]) or job)["progress"],
                                           "pid": proc.pid})
        last: dict[str, Any] | None = None
        assert proc.stdout is not None
        with log_path.open("a", encoding="utf-8") as logf:
            for line in proc.stdout:
                logf.write(line)
                logf.flush()
                event = parse_event(line)
                if event is None:
                    if line.strip():
                        self._tail.append(line.rstrip()[:500])
                        self._set(job["job_id"], log_tail=list(self._tail), persist=False)
                    continue
                last = event
                if event["event"] == "error":
                    self._tail.append(f"error: {event.get('message') or event}")
                cur = self.get(job["job_id"]) or job
                progress = fold_progress(cur["progress"] or {}, event, int(params["folds"]),
                                         int(params["epochs"]))
                self._set(job["job_id"], progress=progress, log_tail=list(self._tail))
        rc = proc.wait()
        with self._lock:
            self._proc = None
        return rc, last

    # -- helpers -----------------------------------------------------------------------------
    def _terminate_locked(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        threading.Thread(target=_kill_after, args=(proc, 10.0), daemon=True).start()

    def _set(self, job_id: str, persist: bool = True, **fields: Any) -> None:
        with self._lock:
            if self._current is None or self._current["job_id"] != job_id:
                return
            self._current.update(fields)
            self._bump_locked(job_id)
        if persist:
            self._records.update(job_id, **fields)

    def _finish(self, job_id: str, status: str, error: str | None,
                result: dict[str, Any]) -> None:
        cur = self.get(job_id) or {}
        progress = dict(cur.get("progress") or {})
        progress.pop("pid", None)
        progress.update({k: v for k, v in result.items() if k != "candidate_version"})
        fields = {"status": status, "finished_at": now_iso(), "error": error,
                  "progress": progress, "log_tail": list(self._tail),
                  "candidate_version": result.get("candidate_version")}
        try:
            job = self._records.update(job_id, **fields)
        except Exception:  # the store may be closing under us; memory still tells the truth
            log.exception("could not record the end of job %s", job_id)
            job = {**cur, **fields}
        with self._lock:
            if self._current is not None and self._current["job_id"] == job_id:
                self._current.update(fields)
            self._bump_locked(job_id)
        self._on_finish(job)

    def _bump_locked(self, job_id: str) -> None:
        self._versions[job_id] += 1
        self._changed.notify_all()


class _Stopped(Exception):
    pass


def _exit_reason(rc: int, last: dict[str, Any] | None, tail: list[str]) -> str:
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"training process was killed by {name}"
    if last is not None and last.get("event") == "error":
        return f"training failed: {last.get('message') or last.get('error') or last}"
    detail = f": {tail[-1]}" if tail else ""
    return f"training process exited with code {rc}{detail}"


def _kill_after(proc: subprocess.Popen[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return
        time.sleep(0.1)
    proc.kill()


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if the daemon dies, so no orphan trains on unseen."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
