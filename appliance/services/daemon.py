"""The daemon's composition root: one store, the serving model, jobs and the nightly schedule.

`Daemon.open(config)` opens the store (StoreLockedError when another process holds it), starts
serving (the shipped baseline is registered and activated on first start), resumes the job a
previous run left unfinished (or fails it, saying why), clears ended jobs' folders, and starts
the nightly schedule. `close()` stops a running job (it resumes at the next start), the
schedule, and closes the store. api.app.create_app(daemon) serves it over HTTP.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import msgspec

import appliance
from appliance.bus.bridge import MqttBridge
from appliance.bus.watch import FolderWatcher, check_folders
from appliance.config import DaemonConfig
from appliance.engine.sessions import set_default_threads
from appliance.errors import (
    ApplianceError,
    DiskFullError,
    NotFoundError,
    ValidationError,
)
from appliance.home import FIRST_KEY_FILE
from appliance.jobs.records import StoreJobRecords
from appliance.jobs.runner import JobConflictError, JobRunner, Prepared, job_command
from appliance.jobs.schedule import NightlySchedule
from appliance.jobs.shown import shown_job
from appliance.records import (
    SEARCH_KIND,
    ApiKey,
    AuditEntry,
    BusStatus,
    DiskHealth,
    Health,
    HealthDetails,
    Job,
    JobParams,
    StoreHealth,
    Trial,
)
from appliance.redact import scrubbed, shown_path
from appliance.services.backup import BackupManifest, backup_into_home
from appliance.services.db import Db
from appliance.services.drift import DriftService
from appliance.services.failed_candidates import remove_expired, set_aside
from appliance.services.holes import HoleService
from appliance.services.keys import (
    KeyIdentity,
    as_role,
    create_key,
    hash_key,
    new_key,
    revoke_key,
)
from appliance.services.metrics import Metrics
from appliance.services.models import ModelService, estimate_processes
from appliance.store import Store

log = logging.getLogger("appliance.daemon")


class Daemon:
    def __init__(self, config: DaemonConfig, store: Store, serving: Any,
                 schedule: bool = True) -> None:
        self.config = config
        self.store = store
        self.db = Db(store)
        self.metrics = Metrics()
        self.models = ModelService(serving, estimate_processes(config.estimate_processes))
        self.drift = DriftService(store)
        self.holes = HoleService(self.db, self.models, self.metrics, self.drift,
                                 trace_cache_bytes=config.trace_cache_bytes)
        self.jobs = JobRunner(
            StoreJobRecords(store), config.home / "jobs", prepare=self._prepare,
            on_candidate=self._adopt, on_finish=self._job_finished,
            command=functools.partial(job_command, train=config.train),
            reopen=self._reopen)
        self._keys: dict[str, KeyIdentity] = {}  # hash -> keys seen valid
        self._keys_lock = threading.Lock()
        self._closed = False
        self._stopping = threading.Event()
        self._backfill: threading.Thread | None = None
        self.watcher: FolderWatcher | None = None
        self.bus: MqttBridge | None = None
        self.first_key_file: Path | None = None
        self.schedule: NightlySchedule | None = None
        if schedule and config.nightly.enabled:
            hour, minute = config.nightly.hour_minute
            self.schedule = NightlySchedule(hour, minute, lambda: self.nightly("schedule"))
        self.metrics.watch(self)

    @classmethod
    def open(cls, config: DaemonConfig, schedule: bool = True,
             baseline_dir: Path | None = None) -> Daemon:
        """baseline_dir: the model registered and activated on first start (default: the
        shipped models/baseline)."""
        # one intra-op thread per model session: the estimate batcher runs one batch per
        # core at once (see EstimateBatcher), which serves more holes per second
        set_default_threads(1)
        if config.watch.paths:
            check_folders(config.watch.paths)  # before the store: a refused start leaves no trace
        store = Store.open(config.home, max_samples=config.max_samples_per_hole)
        daemon: Daemon | None = None
        try:
            serving = _open_serving(store, config, baseline_dir)
            daemon = cls(config, store, serving, schedule=schedule)
            replayed = daemon.drift.replay()
            if replayed:
                log.info("drift watch: %d event(s) replayed, %d drill(s) in alarm", replayed,
                         len(daemon.drift.alarmed()))
            daemon._recover_jobs()
        except BaseException:
            if daemon is not None:
                daemon.jobs.close()  # a resumed job stops here and resumes at the next start
            store.close()
            raise
        if daemon.schedule is not None:
            daemon.schedule.start()
        daemon.first_key_file = daemon._bootstrap_key()
        daemon._backfill = threading.Thread(target=daemon._run_backfill, name="backfill",
                                            daemon=True)
        daemon._backfill.start()
        if config.watch.paths:
            try:
                daemon.watcher = FolderWatcher(
                    [Path(p) for p in config.watch.paths], ingest=daemon._ingest_watched,
                    settle_s=config.watch.settle_s, group=config.watch.group)
            except BaseException:
                daemon.close()  # a folder removed since the check above: store released
                raise
            log.info("watching %s for new drill logs", ", ".join(config.watch.paths))
            daemon.watcher.start()
        if config.mqtt.url is not None:
            try:
                daemon.bus = MqttBridge(config.mqtt, config.home, store, daemon.holes)
                daemon.bus.start()
                daemon.drift.on_alarm(daemon.bus.publish_alarm)
            except BaseException:
                daemon.close()
                raise
        return daemon

    def _ingest_watched(self, data: bytes, source: str, group: str | None) -> bool:
        """A watched folder's file in, as POST /holes takes an upload: True when it made a
        new hole."""
        return self.holes.ingest(data, source, group)[2]

    def _run_backfill(self) -> None:
        try:
            n = self.holes.backfill(self._stopping)
            if n:
                log.info("estimated %d stored hole(s) that had no estimate", n)
        except Exception:  # closing under it, or a bug: estimates come on demand anyway
            if not self._stopping.is_set():
                log.exception("estimating stored holes failed")

    def _bootstrap_key(self) -> Path | None:
        """With no API key at all, create one so a fresh install is usable at once: written
        to <home>/admin.key (owner-only), never printed or logged."""
        if self.store.api_keys():
            return None
        key = new_key()
        path = self.config.home / FIRST_KEY_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key + "\n")
        self.store.add_api_key("admin", hash_key(key), role="admin")
        self.store.audit("daemon", "key-create", "admin", {"file": FIRST_KEY_FILE})
        log.warning("no API key existed: created key 'admin' in %s", path)
        return path

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        if self.bus is not None:
            self.bus.close()  # it may be storing a batch: before the store closes
        if self.watcher is not None:
            self.watcher.close()  # it may be storing a hole: before the store closes
        if self._backfill is not None:
            self._backfill.join(timeout=30)
        if self.schedule is not None:
            self.schedule.stop()
        self.jobs.close()
        self.models.close()
        self.store.close()  # the serving facade shares this store: closed once, here

    # -- auth ----------------------------------------------------------------------------------
    def authenticate(self, key: str) -> str | None:
        """The key's name when valid."""
        who = self.identify(key)
        return None if who is None else who.name

    def known_key(self, key: str) -> KeyIdentity | None:
        """identify() for a key already in memory, without touching the store (the API's
        event loop asks this first; only an unknown key costs a thread and a query)."""
        with self._keys_lock:
            return self._keys.get(hash_key(key))

    def identify(self, key: str) -> KeyIdentity | None:
        """The key's name and role when valid. Known keys are kept in memory; revoking one
        (revoke_key) drops it there too, so it stops working at once."""
        digest = hash_key(key)
        with self._keys_lock:
            who = self._keys.get(digest)
        if who is None:
            found = self.store.api_key(digest)
            if found is not None:
                who = KeyIdentity(found[0], as_role(found[1]))
                with self._keys_lock:
                    self._keys[digest] = who
        return who

    def create_key(self, name: str, role: str, actor: str) -> str:
        """A new key (returned once, stored hashed)."""
        return create_key(self.store, name, role, actor)

    def list_keys(self) -> list[ApiKey]:
        return [ApiKey(name=k["name"], role=k["role"], created_at=k["created_at"])
                for k in self.store.api_keys()]

    def revoke_key(self, name: str, actor: str) -> ApiKey:
        """The key revoked, as it was listed (NotFoundError when there is none)."""
        found = next((k for k in self.list_keys() if k.name == name), None)
        revoke_key(self.store, name, actor)
        with self._keys_lock:
            for digest in [d for d, who in self._keys.items() if who.name == name]:
                del self._keys[digest]
        # made and revoked between the two reads: its role was never seen
        return found or ApiKey(name=name, role="", created_at=None)

    # -- backup --------------------------------------------------------------------------------
    def backup(self, actor: str) -> tuple[str, BackupManifest]:
        """A consistent backup of the home, taken while serving, into <home>/backups/<name>/
        (appliance.services.backup): (name, manifest)."""
        name, manifest = backup_into_home(self.store, self.config.home, actor)
        log.info("backup %s taken: %d files, %.1f MB", name, len(manifest.files),
                 manifest.total_bytes / 1e6)
        return name, manifest

    # -- jobs ----------------------------------------------------------------------------------
    def start_fine_tune(self, params: JobParams, actor: str, kind: str = "fine-tune",
                        auto_promote: bool = False) -> Job:
        return self._start_job(
            kind, msgspec.structs.replace(params, auto_promote=auto_promote), actor)

    def start_search(self, params: JobParams, actor: str) -> Job:
        """A hyperparameter search (`appliance tune`) on the confirmed labels, fine-tuning
        from the active model; it registers no model: its best.json is what it gives."""
        return self._start_job(SEARCH_KIND, params, actor)

    def search_trials(self, job_id: str) -> list[Trial]:
        """The trials a search has finished so far, from its trials.csv."""
        from appliance.jobs.search import read_trials

        job = self.job(job_id)
        if not job.is_search:
            raise ValidationError(f"job {job_id} is a {job.kind}, not a search")
        return read_trials(self.config.home / "jobs" / job_id / "search")

    def _start_job(self, kind: str, params: JobParams, actor: str) -> Job:
        if self.models.active_version() is None:
            raise ValidationError("no active model to fine-tune from")
        running = self.jobs.running()
        if running is not None:
            raise JobConflictError(f"job {running.job_id} ({running.kind}) is "
                                   f"{running.status}; one job runs at a time: wait for it "
                                   "or cancel it")
        n = self._trainable_holes()
        if n == 0:
            raise ValidationError("no confirmed labels outside the exam set: nothing to train on")
        self._check_free_space()
        job = self.jobs.start(kind, params, actor)
        self.store.audit(actor, "job-start", job.job_id,
                         {"kind": kind, **msgspec.to_builtins(params)})
        return job

    def _check_free_space(self) -> None:
        """A job writes a dataset snapshot, checkpoints and a candidate folder: one started on
        a nearly full disk fails half-way, or fills it under the store."""
        need_mb = self.config.train.min_free_mb
        free_mb = shutil.disk_usage(self.config.home).free / 2**20
        if free_mb < need_mb:
            raise DiskFullError(
                f"only {free_mb:.0f} MB free on the disk of the home, and a training job "
                f"needs {need_mb:g} MB ([train] min_free_mb)",
                "free space (old job logs, rejected candidates), then start it again")

    def job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"job {job_id!r} does not exist")
        return job

    def cancel_job(self, job_id: str, actor: str) -> Job:
        self.job(job_id)
        job = self.jobs.cancel(job_id, actor)
        self.store.audit(actor, "job-cancel", job_id, None)
        return job

    def nightly(self, actor: str, force: bool = False) -> dict[str, Any]:
        """The nightly routine: fine-tune from the active model when enough new labels exist;
        promote automatically when every gate passes and auto_promote is on."""
        cfg = self.config.nightly
        since = self._active_dataset_time()
        new = self._new_labels(since)
        out: dict[str, Any] = {"started": False, "new_labels": new,
                               "min_new_labels": cfg.min_new_labels, "job": None}
        running = self.jobs.running()
        if running is not None:
            out["reason"] = f"job {running.job_id} is {running.status}"
            return out
        drifting = self._drift_reason() if cfg.on_drift else None
        if new < cfg.min_new_labels and not force and drifting is None:
            out["reason"] = (f"{new} new confirmed label(s) since the active model's data set; "
                             f"{cfg.min_new_labels} needed")
            return out
        params = JobParams(folds=cfg.folds, epochs=cfg.epochs, head_only=cfg.head_only,
                           architecture=cfg.architecture)
        try:
            job = self.start_fine_tune(params, actor, kind="nightly",
                                       auto_promote=cfg.auto_promote)
        except (ValidationError, DiskFullError) as exc:
            if isinstance(exc, DiskFullError):
                log.error("nightly fine-tune not started: %s", exc)
            out["reason"] = str(exc)
            return out
        why = (f"{new} new confirmed label(s); fine-tune started"
               if new >= cfg.min_new_labels or drifting is None else
               f"{drifting}; fine-tune started")
        out.update(started=True, job=job,
                   reason=why + (" (forced)" if force and new < cfg.min_new_labels
                                 and drifting is None else ""))
        return out

    def _drift_reason(self) -> str | None:
        """Why a drill's drift alarm calls for a fine-tune now: enough of its holes were
        confirmed since the alarm was raised (None when no drill is there)."""
        need = self.config.nightly.min_labels_after_drift
        alarmed = self.drift.alarmed()
        if not alarmed:
            return None
        drills = self.store.hole_drills()
        confirmed = [lab for lab in self.store.latest_labels() if lab.origin == "operator"]
        for name, d in sorted(alarmed.items()):
            since = (d.since or "").replace("+00:00", "").rstrip("Z")
            n = sum(1 for lab in confirmed
                    if drills.get(lab.hole_id) == name
                    and lab.at.rstrip("Z") >= since
                    and not self.store.is_exam(lab.hole_id))
            if n >= need:
                return (f"drill {name} in drift alarm since hole {d.alarm_at_hole}; {n} of its "
                        f"holes confirmed since")
        return None

    def _prepare(self, job: Job, work: Path) -> Prepared:
        from appliance.store.snapshot import export_dataset

        active = self.models.active_version()
        if active is None:
            raise ApplianceError("no active model to fine-tune from")
        # Hold the store for the whole export: the snapshot is one consistent state, and no
        # request thread can leave a half-read result on the shared connection between the
        # drain below and the export (DuckDB refuses register() after an undrained
        # execute().fetchone() on the same connection).
        with self.store.cursor() as con:
            con.execute("SELECT 1").fetchall()
            manifest = export_dataset(self.store, work / "dataset")
        if not manifest.get("n_holes"):
            raise ApplianceError("the dataset snapshot is empty: no confirmed labels outside "
                                 "the exam set")
        parent = self.models.show(active)
        return Prepared(dataset_dir=work / "dataset", parent_dir=self.models.folder(active),
                        parent_version=active, dataset=manifest,
                        architecture=parent.model.architecture)

    def _adopt(self, job: Job, candidate: Path) -> dict[str, Any]:
        promote = job.params.auto_promote
        # the accuracy gate reads the exam set with register() too (see _prepare); gating
        # takes seconds once per job, during which other store calls wait
        with self.store.cursor() as con:
            con.execute("SELECT 1").fetchall()
            return self.models.adopt_candidate(
                candidate, f"job {job.job_id}", promote,
                auto_rollback_mm=self.config.nightly.auto_rollback_mm)

    def _reopen(self, job: Job, work: Path) -> Prepared:
        """What a job interrupted by a restart resumes with: its own snapshot, verified, and
        the parent it started from (its fold checkpoints are only valid for those two)."""
        from appliance.store.snapshot import verify_snapshot

        progress = job.progress
        try:
            manifest = verify_snapshot(work / "dataset")
        except (ApplianceError, OSError) as exc:
            raise ApplianceError(f"its dataset snapshot is gone or damaged "
                                 f"({scrubbed(str(exc), self.config.home)})") from None
        if progress.dataset_hash not in (None, manifest.get("content_hash")):
            raise ApplianceError("its dataset snapshot is not the one it started on")
        parent = progress.parent
        if parent is None:
            raise ApplianceError("it had not recorded the model it fine-tunes from")
        try:
            row = self.models.show(parent).model
            parent_dir = self.models.folder(parent)
        except NotFoundError:
            raise ApplianceError(f"its parent model {parent} is no longer registered") from None
        if row.status == "rejected" or not (parent_dir / "manifest.json").is_file():
            raise ApplianceError(f"its parent model {parent} is rejected or its folder is gone")
        return Prepared(dataset_dir=work / "dataset", parent_dir=parent_dir,
                        parent_version=parent, dataset=manifest,
                        architecture=row.architecture)

    def _recover_jobs(self) -> None:
        """At start: the job a previous run left resumes; ended jobs' leftovers go."""
        done = self.jobs.recover()
        if done.resumed:
            log.warning("job %s was left unfinished by a previous run: resumed", done.resumed)
        for job_id, why in done.failed:
            log.warning("job %s was left unfinished by a previous run and cannot resume: %s",
                        job_id, why)
        if done.freed_bytes:
            log.info("ended jobs' folders cleared: %.1f MB freed", done.freed_bytes / 1e6)
        remove_expired(self.models.serving, self.store,
                       self.config.train.failed_candidate_keep_h)

    def _job_finished(self, job: Job) -> None:
        self.metrics.count_job(job.status)
        try:
            self.store.audit("daemon", "job-end", job.job_id,
                             {"status": job.status, "error": job.error,
                              "candidate_version": job.candidate_version})
            set_aside(self.models.serving, job)
            remove_expired(self.models.serving, self.store,
                           self.config.train.failed_candidate_keep_h)
        except Exception:  # closing store at shutdown: the job row already says it
            log.warning("could not audit the end of job %s", job.job_id, exc_info=True)

    def _trainable_holes(self) -> int:
        return sum(1 for lab in self.store.latest_labels()
                   if not self.store.is_exam(lab.hole_id))

    def _active_dataset_time(self) -> str | None:
        """When the data set of the active model was taken (None: the shipped baseline)."""
        active = self.models.active_version()
        for job in self.store.list_jobs(status="succeeded"):
            if job.candidate_version == active:
                return job.progress.dataset_at
        return None

    def _new_labels(self, since: str | None) -> int:
        cut = since.rstrip("Z") if since else None
        return sum(1 for lab in self.store.latest_labels()
                   if not self.store.is_exam(lab.hole_id)
                   and (cut is None or lab.at.rstrip("Z") > cut))

    # -- health and metrics --------------------------------------------------------------------
    def health(self) -> Health:
        """What GET /health shows without a key: up or not, version, active model."""
        details = self.health_details()
        return Health(status=details.status, version=details.version,
                      active_model=details.active_model)

    def health_details(self) -> HealthDetails:
        """GET /health/details: store, disk, running job, schedule. Paths relative to the
        home, the running job's scrubbed: a client learns nothing of the box's layout."""
        home = self.config.home
        holes: int | None = None
        labelled: int | None = None
        try:
            holes = self.store.count_holes()
            labelled = self.store.count_holes(labelled=True)
        except Exception as exc:
            log.error("store health check failed: %s", exc)
            store_ok = False
        else:
            store_ok = True
        usage = shutil.disk_usage(home)
        active = self.models.active_version()
        running = self.jobs.running()
        free = usage.free / usage.total if usage.total else 0.0
        nxt = self.schedule.next_at if self.schedule is not None else None
        return HealthDetails(
            status="ok" if store_ok and free > 0.05 else "degraded",
            version=appliance.__version__,
            store=StoreHealth(ok=store_ok, path=shown_path(self.store.path, home),
                              holes=holes, labelled_holes=labelled),
            active_model=active,
            estimator="ensemble" if active else "heuristic",
            running_job=None if running is None else shown_job(running, home),
            disk=DiskHealth(free_bytes=usage.free, total_bytes=usage.total,
                            free_fraction=round(free, 4)),
            nightly_next=nxt.isoformat() if nxt is not None else None,
            open_reads=self.config.open_reads,
        )

    def audit_log(self, since: str | None, limit: int, offset: int) -> list[AuditEntry]:
        """GET /audit: newest first. Subjects and details name what a CLI run was given (files,
        folders) relative to the home or by file name, as every answer does."""
        home = self.config.home
        return [msgspec.structs.replace(entry, subject=scrubbed(entry.subject, home),
                                        detail=scrubbed(entry.detail, home))
                for entry in self.db.audit_log(since, limit, offset)]

    def bus_status(self) -> BusStatus:
        if self.bus is None:
            return BusStatus(False, None, None, False, None, None, 0, 0, 0, {})
        return self.bus.status()

    def metrics_exposition(self) -> bytes:
        """GET /metrics: Prometheus text (CONTENT_TYPE_LATEST), the state read now."""
        return self.metrics.exposition()


def _open_serving(store: Store, config: DaemonConfig, baseline_dir: Path | None) -> Any:
    """The serving room's facade, with the shipped baseline active on first start."""
    from appliance.registry.service import ServingService

    serving = ServingService(store, config.home, gate_config=config.gates,
                             baseline_dir=baseline_dir)
    serving.start()
    return serving
