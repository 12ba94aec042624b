"""Training jobs: one at a time, in a child process, followed by a reader thread.

The daemon never trains in its own process: a dataset snapshot is written, then
`python -m appliance.cli train --dataset SNAP --out CAND --parent ACTIVE --progress-json` runs
as a child whose stdout lines are progress events (appliance.jobs.events) or log text. A child
that fails, is cancelled or is killed leaves the registry and the active model alone: only a
child that exits 0 and said "done" hands its candidate folder to `on_candidate` (register,
gates, maybe activate).

A job the daemon was stopped or killed under resumes at its next start (`recover`): the child
runs again on the job's own snapshot and folder, so the folds it had finished are reloaded from
their checkpoints, not trained again. An ended job's folder keeps only its log (and a search's
trials): see appliance.jobs.job_folder.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, Unpack

import msgspec

from appliance.config import TrainConfig
from appliance.errors import ApplianceError
from appliance.jobs import job_folder
from appliance.jobs.events import fold_progress, parse_event
from appliance.jobs.search import read_best_summary
from appliance.records import (
    SEARCH_KIND,
    Job,
    JobChange,
    JobParams,
    JobProgress,
    JobStatus,
)

log = logging.getLogger("appliance.jobs")

LOG_TAIL_LINES = 40


_Waiter = tuple[asyncio.AbstractEventLoop, asyncio.Future[int]]  # a stream awaiting news


class JobConflictError(ApplianceError):
    """A job is already running: one at a time on this box."""


class JobRecords(Protocol):
    """Where jobs are persisted (the store's jobs table)."""

    def create(self, kind: str, params: JobParams) -> Job: ...
    def update(self, job_id: str, **fields: Unpack[JobChange]) -> Job: ...
    def get(self, job_id: str) -> Job | None: ...
    def list(self, limit: int = 50) -> list[Job]: ...


@dataclass(frozen=True)
class Prepared:
    """What a job needs before the child starts (built by the daemon, under its store lock)."""

    dataset_dir: Path
    parent_dir: Path | None
    parent_version: str | None
    dataset: dict[str, Any]  # the snapshot manifest (n_holes, content_hash, created_at, ...)
    architecture: str | None = None  # the parent's, used when the job names none


@dataclass(frozen=True)
class Recovered:
    """What `recover` did with the jobs a previous daemon left."""

    resumed: str | None  # the job now running again
    failed: tuple[tuple[str, str], ...]  # (job id, why it could not resume)
    freed_bytes: int  # ended jobs' snapshots, candidates and checkpoints removed


def now_iso() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def job_command(kind: str, params: JobParams, prep: Prepared, out_dir: Path,
                train: TrainConfig | None = None) -> list[str]:
    """The child's command line: `appliance train` (fine-tunes, the nightly) or `appliance
    tune` (a search), on the snapshot, from the active model, where [train] says."""
    train = train or TrainConfig()
    folds, epochs = _asked(params.folds, "folds"), _asked(params.epochs, "epochs")
    verb = (["tune", "--trials", str(_asked(params.trials, "trials"))] if kind == SEARCH_KIND
            else ["train"])
    cmd = [sys.executable, "-m", "appliance.cli", *verb, "--dataset", str(prep.dataset_dir),
           "--out", str(out_dir), "--folds", str(folds), "--epochs", str(epochs),
           "--progress-json",
           # half the cores: the daemon keeps answering while a job trains
           "--threads", str(max(1, (os.cpu_count() or 2) // 2)),
           "--device", train.device]
    if train.ray:
        cmd += ["--ray", train.ray]
    if prep.parent_dir is not None:
        cmd += ["--parent", str(prep.parent_dir)]
    if params.head_only:
        cmd.append("--head-only")
    arch = params.architecture or prep.architecture
    if arch:
        cmd += ["--arch", arch]
    if params.seed is not None:
        cmd += ["--seed", str(params.seed)]
    return cmd


def _asked(value: int | None, name: str) -> int:
    if value is None:
        raise ApplianceError(f"the job's parameters have no {name}")
    return value


class JobRunner:
    """Starts, follows, cancels and recovers training jobs.

    prepare(job, work_dir) -> Prepared: snapshot + parent (raises ApplianceError to fail the job);
    on_candidate(job, candidate_dir) -> dict of result fields (candidate_version, gate_passed,
    activated, ...); on_finish(job) is told every terminal job (metrics); reopen(job, work_dir)
    -> Prepared: what an interrupted job resumes with (its snapshot, verified, and its parent;
    raises ApplianceError, saying why, when it cannot resume).
    """

    def __init__(
        self,
        records: JobRecords,
        jobs_dir: Path,
        prepare: Callable[[Job, Path], Prepared],
        on_candidate: Callable[[Job, Path], dict[str, Any]],
        on_finish: Callable[[Job], None] = lambda job: None,
        command: Callable[[str, JobParams, Prepared, Path], list[str]] = job_command,
        reopen: Callable[[Job, Path], Prepared] | None = None,
    ) -> None:
        self._records = records
        self._jobs_dir = jobs_dir
        self._prepare = prepare
        self._on_candidate = on_candidate
        self._on_finish = on_finish
        self._command = command
        self._reopen = reopen
        self._lock = threading.Lock()
        # the runner's latest job; a frozen record, replaced (never changed) under the lock,
        # so whoever was handed it reads it without the lock
        self._current: Job | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._cancel_reason: str | None = None
        self._closing = False  # a stopping daemon leaves its job to resume at the next start
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._versions: dict[str, int] = collections.defaultdict(int)
        # event streams awaiting a job's next change, each on its event loop: a stream holds
        # no thread and polls nothing (a thread per stream starved the request threads)
        self._waiters: dict[str, set[_Waiter]] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    def recover(self) -> Recovered:
        """At the daemon's start: the latest job a previous daemon left queued or running
        resumes (never a ghost 'running'); one that cannot, and any other, is failed saying
        why. Every ended job's folder is cleared of what a crash left in it."""
        jobs = self._records.list(limit=10_000)  # newest first
        unfinished = [j for j in jobs if not j.ended]
        resumed: str | None = None
        failed: list[tuple[str, str]] = []
        for job in unfinished:
            why = ("another job was resumed" if resumed is not None
                   else self._resume(job))
            if why is None:
                resumed = job.job_id
                continue
            self._fail_unfinished(job, why)
            failed.append((job.job_id, why))
        ended = {j.job_id for j in jobs if j.ended}
        ended |= {job_id for job_id, _ in failed}
        freed = 0
        if self._jobs_dir.is_dir():
            for work in self._jobs_dir.iterdir():
                if work.name in ended:
                    freed += job_folder.remove_leftovers(work)
        return Recovered(resumed, tuple(failed), freed)

    def _resume(self, job: Job) -> str | None:
        """Start `job` again where it stopped; None when it runs, else why it cannot."""
        if self._reopen is None:
            return "jobs do not resume here"
        try:
            prep = self._reopen(job, self._jobs_dir / job.job_id)
        except ApplianceError as exc:
            return str(exc)
        except Exception as exc:  # a bug must not keep the daemon from starting
            log.exception("could not reopen job %s", job.job_id)
            return f"internal error: {type(exc).__name__}: {exc}"
        with self._lock:
            self._current = job
            self._cancel_reason = None
            self._tail.clear()
            self._tail.extend(job.log_tail)
            self._bump_locked(job.job_id)
            self._thread = threading.Thread(target=self._run, args=(job, prep),
                                            name=f"job-{job.job_id}", daemon=True)
            self._thread.start()
        return None

    def _fail_unfinished(self, job: Job, why: str) -> None:
        ended = self._records.update(
            job.job_id, status="failed", finished_at=now_iso(), progress=_no_pid(job.progress),
            error=f"daemon restarted while the job was {job.status} and it cannot resume: "
                  f"{why}; start it again")
        self._on_finish(ended)

    def close(self, reason: str = "daemon stopped while the job was running") -> None:
        """Stop a running child and wait for the job thread. The job is not ended: it keeps
        its folder and status and resumes at the daemon's next start (see recover)."""
        with self._lock:
            thread = self._thread
            if self._current is not None and not self._current.ended:
                self._closing = True
                self._cancel_reason = reason
                self._terminate_locked()
        if thread is not None:
            thread.join(timeout=30)

    # -- queries -----------------------------------------------------------------------------
    def running(self) -> Job | None:
        with self._lock:
            current = self._current
        return current if current is not None and not current.ended else None

    def get(self, job_id: str) -> Job | None:
        return self.live(job_id) or self._records.get(job_id)

    def live(self, job_id: str) -> Job | None:
        """The job from memory when it is the runner's latest one (no store read), else None."""
        with self._lock:
            current = self._current
        return current if current is not None and current.job_id == job_id else None

    def list(self, limit: int = 50) -> list[Job]:
        jobs = self._records.list(limit=limit)
        live = self.running()
        return [live if live is not None and j.job_id == live.job_id else j for j in jobs]

    def version(self, job_id: str) -> int:
        """Bumped at every change of the job: lets event streams wait for news cheaply."""
        return self._versions.get(job_id, 0)

    async def next_change(self, job_id: str, seen: int) -> int:
        """The job's version once it differs from `seen`, awaited on the caller's event loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            now = self._versions.get(job_id, 0)
            if now != seen:
                return now
            future: asyncio.Future[int] = loop.create_future()
            waiter = (loop, future)
            self._waiters.setdefault(job_id, set()).add(waiter)
        try:
            return await waiter[1]
        finally:  # a stream whose client went away is cancelled here: forget it
            with self._lock:
                waiting = self._waiters.get(job_id)
                if waiting is not None:
                    waiting.discard(waiter)
                    if not waiting:
                        del self._waiters[job_id]

    # -- commands ----------------------------------------------------------------------------
    def start(self, kind: str, params: JobParams, actor: str) -> Job:
        with self._lock:
            cur = self._current
            if cur is not None and not cur.ended:
                raise JobConflictError(
                    f"job {cur.job_id} ({cur.kind}) is {cur.status}; one job runs at a "
                    "time: wait for it or cancel it (DELETE /jobs/{id})")
            job = self._records.create(kind,
                                       msgspec.structs.replace(params, requested_by=actor))
            self._current = job
            self._cancel_reason = None
            self._tail.clear()
            self._bump_locked(job.job_id)
            self._thread = threading.Thread(target=self._run, args=(job,),
                                            name=f"job-{job.job_id}", daemon=True)
            self._thread.start()
            return job

    def cancel(self, job_id: str, actor: str) -> Job:
        with self._lock:
            cur = self._current
            if cur is None or cur.job_id != job_id or cur.ended:
                job = cur if cur is not None and cur.job_id == job_id else None
                job = job or self._records.get(job_id)
                if job is None:
                    raise KeyError(job_id)
                raise JobConflictError(f"job {job_id} is already {job.status}")
            self._cancel_reason = f"cancelled by {actor}"
            self._terminate_locked()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30)
        job = self.get(job_id)
        assert job is not None
        return job

    # -- the job thread ----------------------------------------------------------------------
    def _run(self, job: Job, resumed: Prepared | None = None) -> None:
        """The job from its snapshot to its end; `resumed`: what a job interrupted by a
        daemon restart picks up again (its snapshot and folder as they were left)."""
        job_id = job.job_id
        work = self._jobs_dir / job_id
        status: JobStatus = "succeeded"
        error: str | None = None
        candidate: str | None = None
        gained = JobProgress()
        try:
            result = self._outcome(job, work, resumed)
            candidate = result.pop("candidate_version", None)
            # what the job gave, read as the record's types: a result that does not fit them
            # fails the job here rather than the reading of it later
            gained = msgspec.convert(result, JobProgress)
        except _Stopped as stop:
            if self._closing:  # left as it is, to resume at the daemon's next start
                cur = self.get(job_id) or job
                self._set(job_id, progress=_no_pid(cur.progress), log_tail=tuple(self._tail))
                return
            status = "cancelled" if str(stop).startswith("cancelled") else "failed"
            error = str(stop)
        except ApplianceError as exc:
            status, error = "failed", str(exc)
        except Exception as exc:  # a bug must still end the job clearly, never leave it running
            log.exception("job %s crashed", job_id)
            status, error = "failed", f"internal error: {type(exc).__name__}: {exc}"
        self._finish(job_id, status, error, candidate, gained, work)

    def _outcome(self, job: Job, work: Path, resumed: Prepared | None) -> dict[str, Any]:
        """The result fields of a job that succeeds; raises to end it otherwise."""
        job_id = job.job_id
        search = job.is_search
        out_dir = job_folder.out_dir(work, search)
        log_path = work / job_folder.LOG
        work.mkdir(parents=True, exist_ok=True)
        if resumed is None:
            self._set(job_id, status="running", started_at=now_iso())
            prep = self._prepare(job, work)
            self._set(job_id, progress=JobProgress(
                fraction=0.0, dataset_hash=prep.dataset.get("content_hash"),
                dataset_holes=prep.dataset.get("n_holes"),
                dataset_at=prep.dataset.get("created_at"), parent=prep.parent_version))
        else:
            prep = resumed
            self._mark_resumed(job, log_path)
        if self._cancel_reason:
            raise _Stopped(self._cancel_reason)
        # a candidate written before the restart (the daemon died registering or gating it)
        # is complete: its manifest is the last thing renamed into place
        if not (resumed is not None and not search and (out_dir / "manifest.json").is_file()):
            rc, last = self._follow(job, prep, out_dir, log_path)
            if self._cancel_reason:
                raise _Stopped(self._cancel_reason)
            if rc != 0:
                raise ApplianceError(_exit_reason(rc, last, list(self._tail)))
            if last is None or last.get("event") != "done":
                raise ApplianceError("training exited without its 'done' event")
        if search:  # its trials.csv and best.json stay in the job's folder
            return read_best_summary(out_dir)
        if not (out_dir / "manifest.json").is_file():
            raise ApplianceError(f"training finished but wrote no candidate manifest in "
                                 f"{out_dir}")
        # recorded before registering: a job that fails from here on (or a daemon that dies
        # gating) leaves a registered candidate that its job row names
        self._set(job_id, candidate_version=_candidate_version(out_dir))
        return self._on_candidate(self.get(job_id) or job, out_dir)

    def _mark_resumed(self, job: Job, log_path: Path) -> None:
        at = now_iso()
        line = f"resumed at {at} after a daemon restart: finished folds are not trained again"
        with log_path.open("a", encoding="utf-8") as logf:
            logf.write(f"--- {line} ---\n")
        self._tail.append(line)
        self._set(job.job_id, status="running", log_tail=tuple(self._tail),
                  progress=msgspec.structs.replace(job.progress, pid=None, resumed_at=at))

    def _follow(self, job: Job, prep: Prepared, out_dir: Path,
                log_path: Path) -> tuple[int, dict[str, Any] | None]:
        params = job.params
        cmd = self._command(job.kind, params, prep, out_dir)
        folds, epochs = _asked(params.folds, "folds"), _asked(params.epochs, "epochs")
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
        self._set(job.job_id, progress=msgspec.structs.replace(
            (self.get(job.job_id) or job).progress, pid=proc.pid))
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
                        self._set(job.job_id, log_tail=tuple(self._tail), persist=False)
                    continue
                last = event
                if event["event"] == "error":
                    self._tail.append(f"error: {event.get('message') or event}")
                cur = self.get(job.job_id) or job
                progress = fold_progress(cur.progress, event, folds, epochs)
                self._set(job.job_id, progress=progress, log_tail=tuple(self._tail))
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

    def _set(self, job_id: str, persist: bool = True, **fields: Unpack[JobChange]) -> None:
        with self._lock:
            if self._current is None or self._current.job_id != job_id:
                return
            self._current = msgspec.structs.replace(self._current, **fields)
            self._bump_locked(job_id)
        if persist:
            self._records.update(job_id, **fields)

    def _finish(self, job_id: str, status: JobStatus, error: str | None,
                candidate: str | None, gained: JobProgress, work: Path) -> None:
        """Record the end, clear the job's folder, then show the end: a daemon killed in
        between finds an ended job (swept at its start), and whoever sees the job ended
        sees its folder cleared."""
        cur = self.get(job_id)
        fields: JobChange = {
            "status": status, "finished_at": now_iso(), "error": error,
            "progress": _no_pid(cur.progress if cur is not None else JobProgress()
                                ).merged(gained),
            "log_tail": tuple(self._tail),
            # a failed job keeps the candidate it registered: see _run
            "candidate_version": candidate or (cur.candidate_version if cur else None)}
        job: Job | None
        try:
            job = self._records.update(job_id, **fields)
        except Exception:  # the store may be closing under us; memory still tells the truth
            log.exception("could not record the end of job %s", job_id)
            job = msgspec.structs.replace(cur, **fields) if cur is not None else None
        # the snapshot is reproducible from the store, the candidate registered or worthless,
        # the checkpoints spent; the log (and a search's trials) are kept
        job_folder.remove_leftovers(work)
        with self._lock:
            if self._current is not None and self._current.job_id == job_id:
                self._current = msgspec.structs.replace(self._current, **fields)
            self._bump_locked(job_id)
        if job is not None:
            self._on_finish(job)

    def _bump_locked(self, job_id: str) -> None:
        self._versions[job_id] += 1
        for loop, future in self._waiters.pop(job_id, ()):
            with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits there
                loop.call_soon_threadsafe(_settle, future, self._versions[job_id])


class _Stopped(Exception):
    pass


def _settle(future: asyncio.Future[int], version: int) -> None:
    if not future.done():  # not cancelled meanwhile
        future.set_result(version)


def _no_pid(progress: JobProgress) -> JobProgress:
    """A job's progress once no child runs for it."""
    return msgspec.structs.replace(progress, pid=None)


def _candidate_version(candidate: Path) -> str | None:
    from appliance.engine.manifest import ModelFolderError, read_manifest

    try:
        return read_manifest(candidate).version
    except ModelFolderError:
        return None  # registering it says why, and fails the job


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
