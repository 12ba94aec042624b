"""A small in-memory double of the daemon's REST API, and tests of the TUI's client against it.

The double follows the routes and JSON shapes of api/ (api/schemas.py) with deterministic
data, so that snapshot tests are reproducible; the behaviour of the real daemon is tested by
tests/test_tui_daemon.py against `appliance serve`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import jsonschema
import msgspec
import numpy as np
import pytest
from litestar import Litestar, Request, Response, delete, get, post, put
from litestar.response import ServerSentEvent, ServerSentEventMessage
from loopback import serve_in_thread

from appliance.monitor.drift import CHANNELS
from appliance.points import DepthPoints
from appliance.records import (
    Activation,
    ActivationAction,
    AuditEntry,
    DiskHealth,
    DriftSignal,
    DrillDrift,
    Estimate,
    GateOutcome,
    GateVerdict,
    Health,
    HealthDetails,
    Hole,
    HolePage,
    Job,
    JobParams,
    JobProgress,
    Label,
    LiveAccuracy,
    ModelDetail,
    ModelSummary,
    StoreHealth,
    Trial,
    WindowAccuracy,
)
from appliance.services.holes import review_key
from tui.client import (
    ApiError,
    DaemonClient,
    DaemonUnreachable,
    DriftPage,
    best_trial,
    decoded,
    describe_error,
    parse_sse,
)

# The double declares its routes in Litestar's short style; its deprecation notes are noise.
pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

STAMP = "2026-11-28T09:00:00"
KEY = "test-key"
DRIFT_THRESHOLD = 10.0


def synthetic_trace(entry: float, transition: float, exit_: float, n: int,
                    seed: int) -> dict[str, list[float]]:
    """Torque ramps at the three points (half-heights exactly there), some noise."""
    rng = np.random.default_rng(seed)
    depth = np.linspace(0.8, exit_ + 4.0, n)

    def ramp(at: float, height: float) -> np.ndarray:
        return height * np.clip((depth - at) / 0.6 + 0.5, 0, 1)

    torque = ramp(entry, 2.0) + ramp(transition, 3.0) - ramp(exit_, 5.0)
    torque = torque + rng.normal(0, 0.03, n)
    thrust = 0.6 * ramp(entry, 2.0) + 0.4 * ramp(transition, 3.0) - ramp(exit_, 2.4)
    step = np.where(depth < transition - 1.0, 1, 2)
    return {"depth_mm": depth.round(4).tolist(), "torque_a": torque.round(4).tolist(),
            "thrust_a": thrust.round(4).tolist(), "step": step.astype(int).tolist()}


def drill_drift(drill: str, holes: int, seed: int = 0) -> DrillDrift:
    """A drill's drift state: learning for its first 30 holes (every statistic 0, as the real
    watch reports), then ok with CUSUMs under the threshold."""
    learning = holes < 30
    signals = tuple(
        DriftSignal(name, 0.0 if learning else round(((seed * 7 + j * 3) % 9) * 0.9, 2),
                    DRIFT_THRESHOLD, "learning" if learning else "ok")
        for j, name in enumerate(CHANNELS))
    return DrillDrift(drill, "learning" if learning else "ok", holes, None, None, signals)


def search_trial(number: int) -> Trial:
    """Trial `number` of a search from the active model: every third one pruned (no figures,
    as trials.csv leaves them), the best of the first six is 4."""
    params: dict[str, float | int | str] = {
        "lr": round(1e-4 * (1 + (number * 5) % 9), 6), "head_epochs": number % 3,
        "augment_strength": round(0.1 * ((number * 3) % 7), 2)}
    if number % 3 == 2:
        return Trial(number=number, state="pruned", objective=None, mae_entry_mm=None,
                     mae_transition_mm=None, mae_exit_mm=None, presence_error=None,
                     duration_s=None, params=params)
    objective = round(0.4 + 0.03 * ((number * 3 + 2) % 7), 3)
    return Trial(number=number, state="complete", objective=objective,
                 mae_entry_mm=round(objective * 0.6, 3),
                 mae_transition_mm=round(objective * 1.5, 3),
                 mae_exit_mm=round(objective * 0.8, 3), presence_error=0.02,
                 duration_s=11.5 + number, params=params)


@dataclass
class FakeDaemon:
    holes: dict[str, Hole] = field(default_factory=dict)
    traces: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    labels: dict[str, list[Label]] = field(default_factory=dict)  # oldest first
    jobs: list[Job] = field(default_factory=list)  # newest first, as GET /jobs lists them
    audit: list[AuditEntry] = field(default_factory=list)  # newest first
    models: list[ModelSummary] = field(default_factory=list)
    activations: list[Activation] = field(default_factory=list)  # newest first
    active: str = "baseline"
    event_pause_s: float = 0.01  # between a job's progress events
    requests: list[str] = field(default_factory=list)
    drift: dict[str, DrillDrift] = field(default_factory=dict)
    drift_resets: list[str] = field(default_factory=list)  # drills reset, in order
    live: dict[str, LiveAccuracy] = field(default_factory=dict)  # by model version
    trials: dict[str, list[Trial]] = field(default_factory=dict)  # search job -> trials
    has_drift: bool = True  # False: a daemon from before issue 14 (no /drift, no live MAE)

    @classmethod
    def seeded(cls, n_holes: int = 5, n_samples: int = 3000) -> FakeDaemon:
        d = cls()
        for i in range(n_holes):
            hid = f"{i + 1:016x}"
            entry, transition, exit_ = 2.0 + 0.3 * i, 9.0 + 0.5 * i, 18.0 + 0.4 * i
            d.traces[hid] = synthetic_trace(entry, transition, exit_, n_samples, seed=i)
            spread = round(0.05 + 0.11 * ((i * 3) % n_holes), 3)
            # an order of its own, not the spread's (hole 4 stays first for the tmux test)
            priority = round(0.04 + 0.2 * ((i * 2 + 3) % n_holes), 2)
            d.holes[hid] = Hole(
                hole_id=hid, source=f"synth/hole_{i + 1:03d}.xls", source_group="synth",
                variant="synthetic", file_version=None,
                cycle_date=f"2026-11-2{i % 8}T08:{i:02d}:00", drill_serial=f"SN{100 + i}",
                head_name="HEAD", head_local_counter=i, n_samples=n_samples,
                depth_min_mm=0.8, depth_max_mm=exit_ + 4.0, ingested_at=STAMP,
                labelled=False, label=None, uncertainty_mm=spread, review_priority=priority,
                estimate=Estimate(
                    entry_mm=entry + 0.2, transition_mm=transition - 0.3, exit_mm=exit_ + 0.25,
                    spread_mm={"entry": spread / 2, "transition": spread, "exit": spread / 3},
                    presence={"entry": 1.0, "transition": 0.9, "exit": 1.0},
                    confidence={"entry": 0.9, "transition": 0.7, "exit": 0.8},
                    model_version="baseline", estimator="ensemble", note=None,
                    review_priority=priority,
                ),
            )
            d.labels[hid] = []
        d.models = [
            ModelSummary(version="baseline", parent=None, architecture="patchtsmixer",
                         created_at="2026-11-01T00:00:00", status="active", active=True,
                         dataset_hash="aa", gate_passed=True,
                         metrics={"mae_mm": {"entry": 0.21, "transition": 0.44, "exit": 0.3}}),
            ModelSummary(version="ft-0001", parent="baseline", architecture="patchtsmixer",
                         created_at="2026-11-27T02:00:00", status="candidate", active=False,
                         dataset_hash="bb", gate_passed=True,
                         metrics={"mae_mm": {"entry": 0.18, "transition": 0.41,
                                             "exit": 0.27}}),
            ModelSummary(version="ft-0002", parent="ft-0001", architecture="patchtsmixer",
                         created_at="2026-11-28T02:00:00", status="rejected", active=False,
                         dataset_hash="cc", gate_passed=False,
                         metrics={"mae_mm": {"entry": 0.35, "transition": 0.62, "exit": 0.5}}),
        ]
        d.activations = [Activation(activation_id=1, at="2026-11-01T00:00:05",
                                    version="baseline", previous_version=None,
                                    action="activate", actor="system", reason="first start")]
        # the holes' drills, some past learning; none in alarm (raise_alarm makes one)
        for i, hole in enumerate(d.holes.values()):
            drill = hole.drill_serial or "unknown"
            d.drift[drill] = drill_drift(drill, holes=12 + 9 * i, seed=i)
        d.live["baseline"] = LiveAccuracy("baseline", 137, (
            WindowAccuracy(50, 50, 0.184, 0.412, 0.263, 0.96),
            WindowAccuracy(200, 137, 0.201, 0.437, 0.288, 0.949)))
        d.audit = [AuditEntry(audit_id=2, at=STAMP, actor="ana", action="label",
                              subject=next(iter(d.holes), None), detail={"label_id": 1}),
                   AuditEntry(audit_id=1, at="2026-11-01T00:00:05", actor="daemon",
                              action="key-create", subject="admin", detail=None)]
        return d

    # --- helpers the routes use --------------------------------------------------------------

    def hole(self, hid: str) -> Hole:
        if hid not in self.holes:
            raise LookupError(f"hole {hid} not found")
        return self.holes[hid]

    def add_label(self, hid: str, points: DepthPoints, by: str) -> Label:
        """Append a label, as the store does: the hole's latest label is the new one."""
        label = Label(label_id=len(self.labels[hid]) + 1, hole_id=hid, **points.as_dict(),
                      by=by, at=STAMP, origin="operator")
        self.labels[hid].append(label)
        self.holes[hid] = msgspec.structs.replace(self.hole(hid), labelled=True, label=label)
        return label

    def job(self, jid: str) -> Job:
        found = next((j for j in self.jobs if j.job_id == jid), None)
        if found is None:
            raise LookupError(f"job {jid!r} does not exist")
        return found

    def start_job(self, kind: str, params: JobParams, progress: JobProgress) -> Job:
        job = Job(job_id=f"job-{len(self.jobs) + 1}", kind=kind, status="running",
                  params=msgspec.structs.replace(params, requested_by="tui"),
                  progress=progress, created_at=STAMP, started_at=STAMP, finished_at=None,
                  error=None, candidate_version=None, log_tail=("snapshot written: 5 holes",))
        self.jobs.insert(0, job)
        return job

    def change_job(self, jid: str, progress: dict[str, Any] | None = None,
                   **fields: Any) -> Job:
        """The job with these fields (and progress fields) changed, as the runner changes
        its record: a new one in its place."""
        job = self.job(jid)
        if progress:
            fields["progress"] = msgspec.structs.replace(job.progress, **progress)
        changed = msgspec.structs.replace(job, **fields)
        self.jobs[self.jobs.index(job)] = changed
        return changed

    def raise_alarm(self, drill: str, at_hole: int,
                    signals: tuple[str, ...] = ("torque", "thrust")) -> None:
        """The drill's watch in alarm since its hole `at_hole`, on these signals."""
        state = self.drift[drill]
        alarmed = iter(range(len(signals)))
        self.drift[drill] = msgspec.structs.replace(
            state, state="alarm", alarm_at_hole=at_hole, since=STAMP,
            holes=max(state.holes, at_hole),
            signals=tuple(
                msgspec.structs.replace(
                    g, statistic=round(DRIFT_THRESHOLD * (1.4 + 0.9 * next(alarmed)), 2),
                    state="alarm") if g.name in signals
                else msgspec.structs.replace(g, state="ok" if g.state == "learning" else g.state)
                for g in state.signals))

    def model(self, version: str) -> ModelSummary:
        found = next((m for m in self.models if m.version == version), None)
        if found is None:
            raise LookupError(f"model version {version!r} is not registered")
        return found

    def set_active(self, version: str, actor: str, action: ActivationAction,
                   reason: str | None) -> ModelSummary:
        """Serve `version`, as the registry does: the one serving before retired, the
        activation logged; the version as it now is."""
        self.models = [msgspec.structs.replace(
            m, active=m.version == version,
            status="active" if m.version == version else
            "retired" if m.status == "active" else m.status) for m in self.models]
        previous, self.active = self.active, version
        self.activations.insert(0, Activation(
            activation_id=len(self.activations) + 1, at=STAMP, version=version,
            previous_version=previous, action=action, actor=actor, reason=reason))
        return self.model(version)

    def app(self) -> Litestar:
        d = self

        def missing(_: Request, exc: Exception) -> Response:
            return Response({"status_code": 404, "detail": str(exc)}, status_code=404)

        def refuse(status: int, detail: str) -> Response:
            return Response({"status_code": status, "detail": detail}, status_code=status)

        def authorised(request: Request) -> bool:
            return request.headers.get("authorization") == f"Bearer {KEY}"

        @get("/health")
        async def health() -> Any:
            # open, as the daemon's: nothing but whether it is up and what serves
            return Health(status="ok", version="test", active_model=d.active)

        @get("/health/details")
        async def health_details(request: Request) -> Any:
            d.requests.append("health")
            if not authorised(request):
                return refuse(401, "unauthorised")
            return HealthDetails(
                status="ok", version="test", active_model=d.active, estimator="ensemble",
                running_job=next((j for j in d.jobs if j.status == "running"), None),
                store=StoreHealth(ok=True, path="appliance.duckdb", holes=len(d.holes),
                                  labelled_holes=sum(bool(v) for v in d.labels.values())),
                disk=DiskHealth(free_bytes=1, total_bytes=2, free_fraction=0.5),
                nightly_next=None, open_reads=True)

        @get("/holes")
        async def list_holes(status: str = "all", since: str | None = None, limit: int = 100,
                             offset: int = 0, drill: str | None = None) -> Any:
            d.requests.append(f"holes?status={status}" + (f"&drill={drill}" if drill else ""))
            items = list(d.holes.values())
            if drill is not None:
                items = [h for h in items if (h.drill_serial or "unknown") == drill]
            if status in ("needs-review", "unlabelled"):
                items = [h for h in items if not h.labelled]
            if status == "labelled":
                items = [h for h in items if h.labelled]
            if status == "needs-review":
                items.sort(key=lambda h: review_key(msgspec.to_builtins(h.estimate)))
            if since:
                items = [h for h in items if h.ingested_at >= since]
            return HolePage(items=items[offset:offset + limit], total=len(items), limit=limit,
                            offset=offset)

        @get("/holes/{hid:str}")
        async def get_hole(hid: str) -> Any:
            return d.hole(hid)

        @get("/holes/{hid:str}/trace")
        async def get_trace(hid: str, max_points: int = 2000) -> Any:
            d.hole(hid)
            trace = d.traces[hid]
            n = len(trace["depth_mm"])
            d.requests.append(f"trace?max_points={max_points}")
            idx = list(range(0, n, max(1, -(-n // max_points))))
            return {"hole_id": hid, "n_samples": n, "n_points": len(idx), "index": idx,
                    **{k: [v[i] for i in idx] for k, v in trace.items()}}

        @get("/holes/{hid:str}/estimate")
        async def get_estimate(hid: str) -> Any:
            return d.hole(hid).estimate

        @put("/holes/{hid:str}/label")
        async def put_label(request: Request, hid: str, data: dict[str, Any]) -> Any:
            if not authorised(request):
                return refuse(401, "unauthorised")
            hole = d.hole(hid)
            points = DepthPoints(data.get("entry_mm"), data.get("transition_mm"),
                                 data.get("exit_mm"))
            problem = points.order_problem()
            for v in points.as_dict().values():
                if v is not None and not hole.depth_min_mm <= v <= hole.depth_max_mm:
                    problem = f"{v} mm is outside the trace"
            if problem:
                return refuse(422, problem)
            return d.add_label(hid, points, data["by"])

        @get("/holes/{hid:str}/labels")
        async def get_labels(hid: str) -> Any:
            d.hole(hid)
            return d.labels[hid]

        @post("/jobs/fine-tune", status_code=202)
        async def fine_tune(data: dict[str, Any]) -> Any:
            from api.schemas import FineTuneIn

            try:
                asked = msgspec.convert(data, FineTuneIn)
            except msgspec.ValidationError as exc:
                return refuse(400, f"Validation failed for POST /jobs/fine-tune: {exc}")
            if any(j.status == "running" for j in d.jobs):
                return refuse(409, "a job is already running")
            return d.start_job(
                "fine-tune",
                JobParams(folds=asked.folds, epochs=asked.epochs, head_only=asked.head_only,
                          architecture=asked.architecture, seed=asked.seed),
                JobProgress(fraction=0.0, fold=0, folds=asked.folds, epoch=0,
                            epochs=asked.epochs, eta_s=30.0))

        @post("/jobs/tune", status_code=202)
        async def tune(data: dict[str, Any]) -> Any:
            from api.schemas import TuneIn

            try:
                asked = msgspec.convert(data, TuneIn)
            except msgspec.ValidationError as exc:
                return refuse(400, f"Validation failed for POST /jobs/tune: {exc}")
            if any(j.status == "running" for j in d.jobs):
                return refuse(409, "a job is already running")
            job = d.start_job(
                "tune", JobParams(trials=asked.trials, folds=asked.folds, epochs=asked.epochs),
                JobProgress(fraction=0.0, folds=asked.folds, epochs=asked.epochs,
                            trials_done=0, trials_total=asked.trials))
            d.trials[job.job_id] = []
            return job

        @get("/jobs/{jid:str}/trials")
        async def trials(jid: str) -> Any:
            job = d.job(jid)
            if not job.is_search:
                return refuse(422, f"job {jid} is a {job.kind}, not a search")
            return d.trials[jid]

        @get("/jobs")
        async def list_jobs() -> Any:
            return d.jobs

        @get("/jobs/{jid:str}")
        async def get_job(jid: str) -> Any:
            return d.job(jid)

        @delete("/jobs/{jid:str}", status_code=200)
        async def cancel_job(jid: str) -> Any:
            return d.change_job(jid, status="cancelled", error="cancelled by operator",
                                finished_at=STAMP)

        @get("/jobs/{jid:str}/events")
        async def events(jid: str) -> ServerSentEvent:
            def message(job: Job, event: str) -> ServerSentEventMessage:
                return ServerSentEventMessage(data=msgspec.json.encode(job).decode(),
                                              event=event)

            async def search() -> Any:
                # a trial ends, its row is in trials.csv, then the job changes (as the runner)
                total, found = d.job(jid).progress.trials_total or 0, d.trials[jid]
                for k in range(total):
                    await asyncio.sleep(d.event_pause_s)
                    if d.job(jid).status != "running":
                        break
                    found.append(search_trial(k))
                    scored = [t.objective for t in found if t.objective is not None]
                    job = d.change_job(
                        jid, progress={"fraction": round((k + 1) / total, 4),
                                       "trials_done": k + 1, "last_event": "trial",
                                       "best_objective": min(scored, default=None)},
                        log_tail=(*d.job(jid).log_tail[-9:], f"trial {k}: {found[-1].state}"))
                    yield message(job, "job")
                complete = [t for t in found if t.objective is not None]
                if d.job(jid).status == "running" and complete:
                    best = min(complete, key=lambda t: t.objective or 0.0)
                    d.change_job(jid, status="succeeded", finished_at=STAMP, progress={
                        "best_trial": best.number, "best_params": best.params,
                        "trials_finished": len(found), "eta_s": 0.0, "last_event": "done"})
                elif d.job(jid).status == "running":
                    d.change_job(jid, status="failed", finished_at=STAMP,
                                 error="no trial finished")
                yield message(d.job(jid), "end")

            async def stream() -> Any:
                folds, epochs = d.job(jid).params.folds or 1, d.job(jid).params.epochs or 1
                total = folds * epochs
                for k in range(total):
                    await asyncio.sleep(d.event_pause_s)
                    if d.job(jid).status != "running":
                        break
                    fold, epoch = divmod(k, epochs)
                    job = d.change_job(
                        jid, progress={"fraction": round((k + 1) / total, 4), "fold": fold,
                                       "epoch": epoch, "eta_s": float(total - k - 1),
                                       "train_loss": 1.0 / (k + 1), "last_event": "epoch"},
                        log_tail=(*d.job(jid).log_tail[-9:], f"fold {fold} epoch {epoch}"))
                    yield message(job, "job")
                if d.job(jid).status == "running":
                    d.change_job(jid, status="succeeded", candidate_version="ft-0003",
                                 finished_at=STAMP, progress={"gate_passed": True,
                                                              "eta_s": 0.0})
                yield message(d.job(jid), "end")

            return ServerSentEvent(search() if d.job(jid).is_search else stream())

        @get("/audit")
        async def audit(request: Request, limit: int = 100) -> Any:
            if not authorised(request):
                return refuse(401, "unauthorised")
            return d.audit[:limit]

        @get("/models")
        async def list_models() -> Any:
            return d.models

        @get("/models/active")
        async def active_model() -> Any:
            model = msgspec.to_builtins(d.model(d.active))
            if not d.has_drift:
                return model
            return {**model, "live_accuracy": d.live.get(d.active)}

        @get("/drift")
        async def drift() -> Any:
            if not d.has_drift:
                return refuse(404, "Not Found")
            return {"drills": [d.drift[k] for k in sorted(d.drift)]}

        @post("/drift/{drill:str}/reset", status_code=200)
        async def reset_drift(request: Request, drill: str) -> Any:
            if not d.has_drift:
                return refuse(404, "Not Found")
            if not authorised(request):
                return refuse(401, "unauthorised")
            if drill not in d.drift:
                return refuse(404, f"no hole of drill {drill!r} has been seen")
            d.drift_resets.append(drill)
            state = d.drift[drill]
            # the reference restarts: learning again, every statistic back to 0
            d.drift[drill] = msgspec.structs.replace(
                state, state="learning", alarm_at_hole=None, since=None,
                signals=tuple(msgspec.structs.replace(g, statistic=0.0, state="learning")
                              for g in state.signals))
            return d.drift[drill]

        @post("/models/{version:str}/activate", status_code=200)
        async def activate(request: Request, version: str, data: dict[str, Any]) -> Any:
            model = next((m for m in d.models if m.version == version), None)
            if model is None:
                return refuse(404, f"model {version} not found")
            if not model.gate_passed and not data.get("force"):
                return refuse(409, f"{version} failed the gate accuracy_regression: entry MAE "
                                   "0.350 mm > active 0.210 mm + 0.05")
            if data.get("force") and not data.get("reason"):
                return refuse(422, "force needs a reason")
            return d.set_active(version, "tui", "activate", data.get("reason"))

        @post("/models/rollback", status_code=200)
        async def rollback(data: dict[str, Any]) -> Any:
            history = [a.previous_version for a in d.activations
                       if a.action == "activate" and a.previous_version]
            if not history:
                return refuse(409, "nothing to roll back to")
            return d.set_active(history[0], "tui", "rollback", data.get("reason"))

        @get("/models/{version:str}")
        async def show_model(version: str) -> Any:
            model = next((m for m in d.models if m.version == version), None)
            if model is None:
                return refuse(404, f"model {version} not found")
            ok = bool(model.gate_passed)
            gates = (GateOutcome(gate="integrity", status="pass", summary="loads, finite"),
                     GateOutcome(gate="accuracy", status="pass" if ok else "fail",
                                 summary="MAE no worse than the active model" if ok else
                                 "entry MAE 0.350 mm > 0.210 mm + 0.05"))
            return ModelDetail(model=model, card=f"# {version}", manifest={},
                               gate_report=GateVerdict(version=version, passed=ok, gates=gates,
                                                       compared_with="baseline", at=STAMP))

        @get("/models/activations")
        async def activations(limit: int = 100) -> Any:
            return d.activations[:limit]

        return Litestar(
            [health, health_details, list_holes, get_hole, get_trace, get_estimate, put_label,
             get_labels, fine_tune, tune, trials, list_jobs, get_job, cancel_job, events, audit,
             list_models, active_model, activate, rollback, activations, show_model, drift,
             reset_drift],
            exception_handlers={LookupError: missing, StopIteration: missing},
        )

    def transport(self) -> httpx.ASGITransport:
        # httpx's ASGI transport hands over a response only when it is complete, so event
        # streams arrive all at once; tests of live streaming use served() instead.
        return httpx.ASGITransport(app=self.app())

    @contextmanager
    def served(self) -> Iterator[str]:
        """The double over real HTTP on a free loopback port (uvicorn in a thread)."""
        with serve_in_thread(self.app(), "the daemon double") as url:
            yield url


# --- tests of the client (the caller) against the double ---------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def client_of(daemon: FakeDaemon, key: str | None = KEY) -> DaemonClient:
    return DaemonClient("http://daemon.test", key, transport=daemon.transport())


async def test_needs_review_list_is_highest_priority_first() -> None:
    daemon = FakeDaemon.seeded(n_holes=5)
    client = client_of(daemon)
    holes = await client.list_holes("needs-review")
    priorities = [h.review_priority for h in holes]
    assert priorities == sorted(priorities, reverse=True) and len(holes) == 5
    assert [h.uncertainty_mm for h in holes] != sorted(
        (h.uncertainty_mm for h in holes), reverse=True)  # the spread does not order it
    assert holes == sorted(daemon.holes.values(), key=lambda h: -(h.review_priority or 0))
    assert await client.count_holes() == 5
    await client.aclose()


async def test_a_hole_the_client_cannot_read_is_named() -> None:
    daemon = FakeDaemon.seeded(n_holes=1)
    hole = next(iter(daemon.holes.values()))
    # a daemon that names the hole "hole_id", or sends a priority as text: refused, naming it
    body = msgspec.to_builtins(hole)
    wrong = {k: v for k, v in body.items() if k != "id"} | {"hole_id": hole.hole_id}
    page = {"items": [wrong], "total": 1, "limit": 100, "offset": 0}
    with pytest.raises(ApiError, match=r"GET /holes: unexpected answer \(Object missing "
                                       r"required field `id` - at `\$.items\[0\]`\)"):
        decoded(page, HolePage, "GET /holes")
    with pytest.raises(ApiError, match=r"Expected `float \| null`, got `str` - at "
                                       r"`\$.review_priority`"):
        decoded({**body, "review_priority": "high"}, Hole, "GET /holes/1")
    with pytest.raises(ApiError, match=r"GET /holes/1/estimate: .* `\$.spread_mm`"):
        decoded({**body["estimate"], "spread_mm": 0.3}, Estimate, "GET /holes/1/estimate")
    client = client_of(daemon)
    assert await client.get_hole(hole.hole_id) == hole
    assert await client.get_estimate(hole.hole_id) == hole.estimate
    await client.aclose()


def test_priority_column_as_a_percentage() -> None:
    from tui.fields import HOLE_COLUMNS, fmt_percent, hole_row

    hole = FakeDaemon.seeded(n_holes=1).holes["0000000000000001"]
    row = dict(zip(HOLE_COLUMNS, hole_row(hole), strict=True))
    assert hole.review_priority is not None
    assert row["prio"] == f"{hole.review_priority * 100:.0f}%"
    assert (row["id"], row["source"], row["drill"], row["label"]) == (
        hole.hole_id, "hole_001.xls", "SN100", "unlabelled")
    assert [fmt_percent(v) for v in (None, 0.0, 0.001, 0.5, 1.0)] == [
        "-", "0%", "<1%", "50%", "100%"]


async def test_label_round_trip_and_refusal_message() -> None:
    daemon = FakeDaemon.seeded(n_holes=2)
    client = client_of(daemon)
    hid = next(iter(daemon.holes))
    put = await client.put_label(hid, DepthPoints(2.5, 9.0, 18.2), "ana")
    labels = await client.get_labels(hid)
    assert labels == [put] and (put.by, put.exit_mm, put.origin) == ("ana", 18.2, "operator")
    assert (await client.get_hole(hid)).label == put
    with pytest.raises(ApiError) as err:
        await client.put_label(hid, DepthPoints(9.0, 2.5, None), "ana")
    # the daemon's own reason, the route and the status; no traceback text
    assert err.value.status == 422
    assert "must be shallower" in err.value.message and "PUT /holes/" in err.value.message
    assert "Traceback" not in err.value.message
    await client.aclose()


async def test_missing_key_is_explained() -> None:
    daemon = FakeDaemon.seeded(n_holes=1)
    client = client_of(daemon, key=None)
    with pytest.raises(ApiError, match="--key"):
        await client.put_label(next(iter(daemon.holes)), DepthPoints(2.5, None, None), "ana")
    await client.aclose()


async def test_unknown_hole_is_a_readable_404() -> None:
    client = client_of(FakeDaemon.seeded(n_holes=1))
    with pytest.raises(ApiError) as err:
        await client.get_hole("ffffffffffffffff")
    assert err.value.status == 404 and "not found" in err.value.message
    await client.aclose()


async def test_job_events_stream_to_the_end() -> None:
    daemon = FakeDaemon.seeded(n_holes=1)
    client = client_of(daemon)
    job = await client.start_fine_tune(folds=2, epochs=3, head_only=True)
    assert job.params == JobParams(folds=2, epochs=3, head_only=True, requested_by="tui")
    events = [e async for e in client.job_events(job.job_id)]
    assert [e.status for e in events] == ["running"] * 6 + ["succeeded"]
    assert [e.ended for e in events] == [False] * 6 + [True]
    fractions = [e.progress.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert events[-1].candidate_version == "ft-0003" and events[-1].progress.gate_passed
    assert await client.get_job(job.job_id) == events[-1]
    await client.aclose()


async def test_unreachable_daemon_says_where() -> None:
    # a port nothing listens on (the kernel refuses at once on loopback)
    client = DaemonClient("http://127.0.0.1:9", None, timeout=2.0)
    with pytest.raises(DaemonUnreachable, match="127.0.0.1:9"):
        await client.health()
    await client.aclose()


async def test_parse_sse_handles_comments_multiline_and_names() -> None:
    async def lines() -> Any:
        for line in [": keep-alive", "event: job", 'data: {"status":', 'data: "running"}', "",
                     "data: plain words", "", "event: end", 'data: {"status": "failed"}']:
            yield line

    events = [e async for e in parse_sse(lines())]
    assert events == [("job", '{"status":\n"running"}'), (None, "plain words"),
                      ("end", '{"status": "failed"}')]


def test_describe_error_prefers_detail_and_names_failing_gates() -> None:
    response = httpx.Response(409, json={"status_code": 409, "detail": "refused",
                                         "extra": {"failed_gates": ["parity", "sanity"]}})
    assert describe_error(response) == "refused — failed gates: parity, sanity"
    assert describe_error(httpx.Response(500, text="Internal Server Error\nmore")) == \
        "Internal Server Error"


async def test_a_dropped_read_is_retried_but_a_write_is_not() -> None:
    class DropsFirst(httpx.AsyncBaseTransport):
        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self.inner, self.calls = inner, 0

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            self.calls += 1
            if self.calls == 1:
                raise httpx.RemoteProtocolError("server disconnected", request=request)
            return await self.inner.handle_async_request(request)

    daemon = FakeDaemon.seeded(n_holes=1)
    reads = DropsFirst(daemon.transport())
    client = DaemonClient("http://daemon.test", KEY, transport=reads)
    assert (await client.health()).status == "ok" and reads.calls == 2
    writes = DropsFirst(daemon.transport())
    client = DaemonClient("http://daemon.test", KEY, transport=writes)
    with pytest.raises(DaemonUnreachable):
        await client.put_label(next(iter(daemon.holes)), DepthPoints(2.5, None, None), "ana")
    assert writes.calls == 1 and not daemon.labels[next(iter(daemon.holes))]


# --- the drift watch and live accuracy (issue 14) ----------------------------------------------


def assert_shaped_as(body: Any, struct: type[msgspec.Struct]) -> None:
    """The double answers what the real route's schema decodes, with exactly its fields (a key
    the API lacks, or one it has that the double forgot, fails here, not on a rig)."""
    msgspec.convert(body, struct)
    if isinstance(body, dict):
        hints = {f.name: f.type for f in msgspec.structs.fields(struct)}
        assert set(body) == set(hints), (struct.__name__, set(body) ^ set(hints))
        for name, value in body.items():
            inner = _struct_in(hints[name])
            if inner is not None:
                for item in value if isinstance(value, list) else [value]:
                    if item is not None:
                        assert_shaped_as(item, inner)


def _struct_in(hint: Any) -> type[msgspec.Struct] | None:
    """The Struct inside list[X] or X | None, if any."""
    if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
        return hint
    for arg in typing.get_args(hint):
        found = _struct_in(arg)
        if found is not None:
            return found
    return None


async def test_the_double_serves_drift_and_live_accuracy_shaped_as_the_api() -> None:
    from api.schemas import ActiveModelOut, DriftOut

    daemon = FakeDaemon.seeded(n_holes=5)
    daemon.raise_alarm("SN103", at_hole=37)
    http = httpx.AsyncClient(transport=daemon.transport(), base_url="http://daemon.test",
                             headers={"Authorization": f"Bearer {KEY}"})
    assert_shaped_as((await http.get("/drift")).json(), DriftOut)
    assert_shaped_as((await http.post("/drift/SN103/reset")).json(), DrillDrift)
    active = (await http.get("/models/active")).json()
    assert_shaped_as(active, ActiveModelOut)
    assert active["live_accuracy"]["windows"][0]["window"] == 50
    daemon.live.clear()  # no confirmed holes yet: null, as the real route says it
    assert_shaped_as((await http.get("/models/active")).json(), ActiveModelOut)
    await http.aclose()


async def test_drift_is_decoded_into_records_and_reset_is_recorded() -> None:
    daemon = FakeDaemon.seeded(n_holes=5)
    daemon.raise_alarm("SN103", at_hole=37, signals=("thrust",))
    client = client_of(daemon)
    drills = {d.drill: d for d in await client.drift()}
    assert sorted(drills) == ["SN100", "SN101", "SN102", "SN103", "SN104"]
    alarm = drills["SN103"]
    assert (alarm.state, alarm.alarm_at_hole, alarm.since) == ("alarm", 37, STAMP)
    assert [s.name for s in alarm.alarmed_signals] == ["thrust"]
    assert alarm.alarmed_signals[0].statistic > alarm.alarmed_signals[0].threshold
    assert drills["SN100"].state == "learning"
    after = await client.reset_drift("SN103")
    assert (after.state, after.alarm_at_hole, after.holes) == ("learning", None, 39)
    assert daemon.drift_resets == ["SN103"]
    with pytest.raises(ApiError) as err:
        await client.reset_drift("SN999")
    assert err.value.status == 404 and "SN999" in err.value.message
    await client.aclose()


async def test_a_daemon_without_the_drift_watch_answers_none() -> None:
    daemon = FakeDaemon.seeded(n_holes=1)
    daemon.has_drift = False
    client = client_of(daemon)
    assert await client.drift() is None
    active = await client.active_model()
    assert active is not None and not active.served and active.live is None
    assert active.model.version == "baseline"
    await client.aclose()


async def test_holes_of_one_drill_and_live_accuracy_records() -> None:
    daemon = FakeDaemon.seeded(n_holes=5)
    client = client_of(daemon)
    holes = await client.list_holes("needs-review", drill="SN102")
    assert [h.drill_serial for h in holes] == ["SN102"]
    assert daemon.requests[-1] == "holes?status=needs-review&drill=SN102"
    active = await client.active_model()
    live = None if active is None else active.live
    assert live is not None and live.model_version == "baseline" and live.confirmed == 137
    assert [(w.window, w.holes) for w in live.windows] == [(50, 50), (200, 137)]
    assert live.windows[0].mae("transition") == pytest.approx(0.412)
    await client.aclose()


def test_a_malformed_drift_answer_is_named() -> None:
    body = {"drill": "SN1", "state": "alarming", "holes": 3, "alarm_at_hole": None,
            "since": None, "signals": []}
    with pytest.raises(ApiError, match=r"GET /drift: unexpected answer \(Invalid enum value "
                                       r"'alarming' - at `\$.drills\[0\].state`\)"):
        decoded({"drills": [body]}, DriftPage, "GET /drift")
    with pytest.raises(ApiError, match=r"Expected `int`, got `str` - at `\$.holes`"):
        decoded({**body, "state": "ok", "holes": "3"}, DrillDrift, "POST /drift/SN1/reset")


# --- a hyperparameter search's trials (issue 15) -----------------------------------------------


async def test_a_search_is_started_and_its_trials_are_decoded_shaped_as_the_api() -> None:
    daemon = FakeDaemon.seeded(n_holes=1)
    client = client_of(daemon)
    job = await client.start_tune(trials=6, folds=2, epochs=3)
    assert (job.kind, job.params) == ("tune", JobParams(trials=6, folds=2, epochs=3,
                                                        requested_by="tui"))
    assert job.is_search
    assert await client.list_trials(job.job_id) == []  # none ended yet
    events = [e async for e in client.job_events(job.job_id)]
    assert [e.progress.trials_done for e in events] == [1, 2, 3, 4, 5, 6, 6]
    assert events[-1].status == "succeeded" and events[-1].progress.best_trial == 4
    for body in daemon.trials[job.job_id]:
        assert_shaped_as(msgspec.to_builtins(body), Trial)
    trials = await client.list_trials(job.job_id)
    assert [(t.number, t.state) for t in trials][:3] == [
        (0, "complete"), (1, "complete"), (2, "pruned")]
    assert trials[2].objective is None and trials[2].params["head_epochs"] == 2
    assert trials[4].objective == pytest.approx(0.4) and trials[4].mae_transition_mm == 0.6
    with pytest.raises(AttributeError):
        trials[0].state = "fail"  # type: ignore[misc]  # a record, not a buffer
    fine = await client.start_fine_tune(folds=2, epochs=1, head_only=True)
    with pytest.raises(ApiError) as err:
        await client.list_trials(fine.job_id)
    assert err.value.status == 422 and "not a search" in err.value.message
    await client.aclose()


def test_a_malformed_trial_is_named_and_the_best_is_the_daemons_or_the_lowest() -> None:
    rows = [search_trial(k) for k in range(6)]
    assert best_trial(rows).number == 4  # the lowest objective of the complete ones
    assert best_trial(rows, number=1).number == 1  # a finished search names its own
    assert best_trial([r for r in rows if r.state == "pruned"]) is None
    body = msgspec.to_builtins(search_trial(0))
    with pytest.raises(ApiError, match=r"GET /jobs/j/trials: unexpected answer \(Invalid enum "
                                       r"value 'done' - at `\$\[0\].state`\)"):
        decoded([{**body, "state": "done"}], list[Trial], "GET /jobs/j/trials")
    with pytest.raises(ApiError, match=r"Expected `int \| float \| str`, got `bool` - at "
                                       r"`\$.params\[...\]`"):
        decoded({**body, "params": {"lr": True}}, Trial, "GET /jobs/j/trials")


# --- jobs and the audit trail, checked against the daemon's own OpenAPI schema (issue 12) -------


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """/schema/openapi.json of a real daemon: what the double's answers are held to."""
    from litestar.testing import TestClient
    from model_fixtures import build_model_folder

    from api.app import create_app
    from appliance.config import load_config
    from appliance.services.daemon import Daemon

    root = tmp_path_factory.mktemp("double-schema")
    base = build_model_folder(root / "shipped", "fixture-base")
    daemon = Daemon.open(load_config(root / "home"), schedule=False, baseline_dir=base)
    try:
        schema: dict[str, Any] = TestClient(create_app(daemon)).get(
            "/schema/openapi.json").json()
    finally:
        daemon.close()
    return schema


def answer_schema(openapi: dict[str, Any], method: str, path: str, status: int,
                  media: str = "application/json") -> jsonschema.Draft202012Validator:
    """A validator of the route's documented answer in which every object of the components
    is closed: a key the API lacks fails as surely as one it has that the double forgot."""
    components = copy.deepcopy(openapi["components"])
    for body in components["schemas"].values():
        if body.get("type") == "object" and "properties" in body:
            body.setdefault("additionalProperties", False)
    answer = openapi["paths"][path][method]["responses"][str(status)]["content"][media]
    return jsonschema.Draft202012Validator({**answer["schema"], "components": components})


async def test_the_doubles_jobs_and_audit_validate_against_the_daemons_schema(
        openapi: dict[str, Any]) -> None:
    daemon = FakeDaemon.seeded(n_holes=1)
    daemon.event_pause_s = 0.0
    http = httpx.AsyncClient(transport=daemon.transport(), base_url="http://daemon.test",
                             headers={"Authorization": f"Bearer {KEY}"})
    fine = await http.post("/jobs/fine-tune", json={"folds": 2, "epochs": 2})
    answer_schema(openapi, "post", "/jobs/fine-tune", 202).validate(fine.json())
    jid = fine.json()["id"]
    answer_schema(openapi, "get", "/health/details", 200).validate(
        (await http.get("/health/details")).json())
    stream = (await http.get(f"/jobs/{jid}/events")).text
    events = [data async for _, data in parse_sse(_lines(stream))]
    event_schema = answer_schema(openapi, "get", "/jobs/{job_id}/events", 200,
                                 "text/event-stream")
    assert len(events) == 5  # one per epoch, then the end
    for data in events:
        event_schema.validate(json.loads(data))
    search = await http.post("/jobs/tune", json={"trials": 2, "folds": 2, "epochs": 1})
    answer_schema(openapi, "post", "/jobs/tune", 202).validate(search.json())
    answer_schema(openapi, "get", "/jobs", 200).validate((await http.get("/jobs")).json())
    answer_schema(openapi, "get", "/jobs/{job_id}", 200).validate(
        (await http.get(f"/jobs/{jid}")).json())
    answer_schema(openapi, "delete", "/jobs/{job_id}", 200).validate(
        (await http.delete(f"/jobs/{search.json()['id']}")).json())
    audit = (await http.get("/audit")).json()
    answer_schema(openapi, "get", "/audit", 200).validate(audit)
    assert [a["action"] for a in audit] == ["label", "key-create"]
    # the check bites: a key the API lacks, or one it has that the double dropped
    with pytest.raises(jsonschema.ValidationError, match="'reason' was unexpected"):
        answer_schema(openapi, "get", "/jobs/{job_id}", 200).validate(
            {**fine.json(), "reason": "an older name of error"})
    with pytest.raises(jsonschema.ValidationError, match="'id' is a required property"):
        answer_schema(openapi, "get", "/jobs/{job_id}", 200).validate(
            {k: v for k, v in fine.json().items() if k != "id"})
    await http.aclose()


async def _lines(text: str) -> Any:
    for line in text.splitlines():
        yield line


async def test_jobs_and_audit_entries_are_decoded_into_the_apis_records() -> None:
    daemon = FakeDaemon.seeded(n_holes=2)
    client = client_of(daemon)
    started = await client.start_fine_tune(folds=2, epochs=1, head_only=False)
    assert await client.list_jobs() == [started] and not started.ended
    cancelled = await client.cancel_job(started.job_id)
    assert (cancelled.status, cancelled.error) == ("cancelled", "cancelled by operator")
    assert cancelled.ended and cancelled.params == started.params
    entries = await client.audit()
    assert entries == daemon.audit and entries[0].detail == {"label_id": 1}
    await client.aclose()


async def test_a_job_the_client_cannot_read_is_named() -> None:
    daemon = FakeDaemon.seeded(n_holes=1)
    client = client_of(daemon)
    job = await client.start_fine_tune(folds=2, epochs=1, head_only=False)
    # a daemon that names the job "job_id" (or says "done"): refused, naming what is wrong
    body = msgspec.to_builtins(job)
    wrong = {k: v for k, v in body.items() if k != "id"} | {"job_id": job.job_id}
    with pytest.raises(ApiError, match=r"GET /jobs: unexpected answer \(Object missing "
                                       r"required field `id` - at `\$\[0\]`\)"):
        decoded([wrong], list[Job], "GET /jobs")
    with pytest.raises(ApiError, match=r"Invalid enum value 'done' - at `\$.status`"):
        decoded({**body, "status": "done"}, Job, "GET /jobs/job-1")
    # the running job comes back inside GET /health/details as the very record it was
    assert (await client.health_details()).running_job == job
    await client.aclose()


async def test_the_doubles_models_validate_against_the_daemons_schema(
        openapi: dict[str, Any]) -> None:
    daemon = FakeDaemon.seeded(n_holes=1)
    http = httpx.AsyncClient(transport=daemon.transport(), base_url="http://daemon.test",
                             headers={"Authorization": f"Bearer {KEY}"})
    answer_schema(openapi, "get", "/models", 200).validate((await http.get("/models")).json())
    answer_schema(openapi, "get", "/models/active", 200).validate(
        (await http.get("/models/active")).json())
    answer_schema(openapi, "get", "/models/{version}", 200).validate(
        (await http.get("/models/ft-0002")).json())
    activated = await http.post("/models/ft-0001/activate", json={"force": False})
    answer_schema(openapi, "post", "/models/{version}/activate", 200).validate(activated.json())
    answer_schema(openapi, "get", "/models/activations", 200).validate(
        (await http.get("/models/activations")).json())
    back = await http.post("/models/rollback", json={"reason": "worse"})
    answer_schema(openapi, "post", "/models/rollback", 200).validate(back.json())
    assert back.json()["version"] == "baseline" and back.json()["active"] is True
    with pytest.raises(jsonschema.ValidationError, match="'name' was unexpected"):
        answer_schema(openapi, "post", "/models/{version}/activate", 200).validate(
            {**activated.json(), "name": "an older name of version"})
    await http.aclose()


async def test_the_doubles_holes_validate_against_the_daemons_schema(
        openapi: dict[str, Any]) -> None:
    daemon = FakeDaemon.seeded(n_holes=2)
    hid = next(iter(daemon.holes))
    http = httpx.AsyncClient(transport=daemon.transport(), base_url="http://daemon.test",
                             headers={"Authorization": f"Bearer {KEY}"})
    label = await http.put(f"/holes/{hid}/label",
                           json={"entry_mm": 2.5, "transition_mm": None, "exit_mm": 18.0,
                                 "by": "ana"})
    answer_schema(openapi, "put", "/holes/{hole_id}/label", 200).validate(label.json())
    page = (await http.get("/holes", params={"status": "all"})).json()
    answer_schema(openapi, "get", "/holes", 200).validate(page)
    assert page["items"][0]["label"] == label.json()  # a labelled hole and one without
    hole = (await http.get(f"/holes/{hid}")).json()
    answer_schema(openapi, "get", "/holes/{hole_id}", 200).validate(hole)
    answer_schema(openapi, "get", "/holes/{hole_id}/estimate", 200).validate(
        (await http.get(f"/holes/{hid}/estimate")).json())
    answer_schema(openapi, "get", "/holes/{hole_id}/labels", 200).validate(
        (await http.get(f"/holes/{hid}/labels")).json())
    with pytest.raises(jsonschema.ValidationError, match="'uncertainty' was unexpected"):
        answer_schema(openapi, "get", "/holes/{hole_id}", 200).validate(
            {**hole, "uncertainty": 0.2})
    await http.aclose()


async def test_models_are_decoded_into_the_apis_records() -> None:
    daemon = FakeDaemon.seeded(n_holes=1)
    client = client_of(daemon)
    assert await client.list_models() == daemon.models
    detail = await client.get_model("ft-0002")
    assert detail.model == daemon.model("ft-0002") and detail.gate_report is not None
    assert [g.gate for g in detail.gate_report.blocking] == ["accuracy"]
    activated = await client.activate("ft-0001")
    assert activated.active and activated.status == "active"
    assert await client.activations() == daemon.activations
    assert (await client.activations())[0].previous_version == "baseline"
    back = await client.rollback(reason="worse")
    assert back.version == "baseline" and daemon.active == "baseline"
    daemon.models[0] = msgspec.structs.replace(daemon.models[0], status="promoted")  # type: ignore[arg-type]
    with pytest.raises(ApiError, match=r"GET /models: unexpected answer .*promoted"):
        await client.list_models()
    await client.aclose()
