"""ServingService: what the daemon, the CLI and the API use to serve and manage models.

It owns the ModelHolder (the engine requests read once), the Registry (folders + rows) and
runs the gates. Activation: load and warm the new engine first, swap the reference, and only
then persist the active pointer (models.status + the activation log, one transaction); a
failed load leaves everything as it was, and a failed persist swaps the old engine back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from appliance.config import GateConfig
from appliance.engine.ensemble import Engine
from appliance.engine.holder import ActiveModel, ModelHolder
from appliance.errors import ApplianceError, NotFoundError, ValidationError
from appliance.gates import run_gates
from appliance.gates.accuracy import score
from appliance.gates.report import GateReport
from appliance.home import baseline_model_dir
from appliance.points import POINT_NAMES, DepthEstimate
from appliance.records import Activation, Estimate, ModelVersion
from appliance.registry import faults
from appliance.registry.registry import Recovery, Registry
from appliance.store import Store
from appliance.store.labels import points_of
from appliance.store.snapshot import exam_set
from appliance.trace import Trace

log = logging.getLogger(__name__)

SYSTEM = "system"
FULL_GATES = ("integrity", "parity", "accuracy", "latency")
LATENCY_HOLES = 8  # stored holes timed by the latency gate when there is no exam set


class GateRefusedError(ApplianceError):
    """Activation refused: the candidate failed (or never passed) a gate and was not forced."""

    exit_code = 4

    def __init__(self, version: str, message: str, gates: Sequence[str] = ()) -> None:
        self.version = version
        self.gates = list(gates)
        super().__init__(message)


class ServingService:
    def __init__(
        self,
        store: Store,
        home: str | Path,
        gate_config: GateConfig | None = None,
        baseline_dir: Path | None = None,
    ) -> None:
        self.store = store
        self.home = Path(home)
        self.gate_config = gate_config or GateConfig()
        self.registry = Registry(store, self.home)
        self.holder = ModelHolder()
        self.baseline_dir = baseline_model_dir() if baseline_dir is None else baseline_dir
        self._lock = threading.RLock()  # one activation/rollback/gate at a time
        self._shadow: ActiveModel | None = None
        self.recovery: Recovery | None = None

    @classmethod
    def open(
        cls, home: str | Path, gate_config: GateConfig | None = None,
        baseline_dir: Path | None = None,
    ) -> ServingService:
        service = cls(Store.open(Path(home)), home, gate_config, baseline_dir)
        service.start()
        return service

    def close(self) -> None:
        self.store.close()

    def start(self) -> None:
        """Recover the registry, register+activate the shipped baseline on first start, load."""
        with self._lock:
            self.recovery = self.registry.recover()
            if not self.store.activations() and self.store.active_version() is None:
                self._bootstrap_baseline()
            self._load_active()

    # -- serving --

    @property
    def active_version(self) -> str | None:
        return self.holder.version

    def estimate(self, trace: Trace) -> DepthEstimate:
        return self.holder.estimate(trace)

    def estimate_many(self, traces: Sequence[Trace]) -> list[DepthEstimate]:
        return self.holder.estimate_many(traces)

    def predict_and_record(self, hole_id: str, trace: Trace) -> DepthEstimate:
        """Serve the active model's estimate and store it; a shadow model's too, unserved."""
        served = self.holder.estimate(trace)
        self.record(hole_id, trace, served)
        return served

    def record_many(self, items: Sequence[tuple[str, Trace, DepthEstimate]]) -> None:
        """`record` of several holes: one transaction for the served estimates; the shadow
        model's in one batch too."""
        rows = [(hole_id, served, False) for hole_id, _, served in items]
        shadow = self._shadow
        if shadow is not None:
            try:
                shadowed = shadow.estimate_many([trace for _, trace, _ in items])
                rows += [(hole_id, est, True)
                         for (hole_id, _, _), est in zip(items, shadowed, strict=True)]
            except Exception:  # the shadow must never cost the served answers
                log.exception("shadow model %s failed on %d hole(s)", shadow.version,
                              len(items))
        self.store.add_predictions(rows)

    def record(self, hole_id: str, trace: Trace, served: DepthEstimate) -> None:
        """Store an estimate served for the hole; a shadow model's too, unserved."""
        self.store.add_prediction(hole_id, served)
        shadow = self._shadow
        if shadow is not None:
            try:
                self.store.add_prediction(hole_id, shadow.estimate(trace), shadow=True)
            except Exception:  # the shadow must never cost the served answer
                log.exception("shadow model %s failed on hole %s", shadow.version, hole_id)

    # -- registry --

    def register(self, folder: str | Path, actor: str = "operator") -> ModelVersion:
        with self._lock:
            return self.registry.register(folder, actor)

    def list_versions(self) -> list[ModelVersion]:
        return self.registry.versions()

    def show(self, version: str) -> ModelVersion:
        return self.registry.get(version)

    def history(self, limit: int | None = None) -> list[Activation]:
        return self.registry.history(limit)

    def ever_active(self, version: str) -> bool:
        return self.registry.ever_active(version)

    def reject(self, version: str, why: str, actor: str = SYSTEM, remove: bool = False
               ) -> ModelVersion:
        """Set a candidate aside, or remove it (Registry.reject); never the shadow model."""
        with self._lock:
            if self.shadow_version == version:
                raise ValidationError(f"model {version} runs in shadow: stop that first")
            return self.registry.reject(version, why, actor, remove=remove)

    # -- gates --

    def gate(self, version: str, actor: str = "operator") -> GateReport:
        """Run every gate on a registered version against the serving model; store the report."""
        with self._lock:
            self.registry.get(version)  # NotFoundError first
            reference = self.holder.current().engine
            exam = exam_set(self.store)
            recent = [] if exam else [self.store.get_trace(h.hole_id)
                                      for h in self.store.list_holes(limit=LATENCY_HOLES)]
            report, _ = run_gates(self.registry.folder(version), reference, exam,
                                  self.gate_config, timing_traces=recent)
            self.registry.save_report(report)
            self.store.audit(actor, "model-gate", version,
                             {"passed": report.passed, "blocking": report.describe_blocking()})
            return report

    # -- activation and rollback --

    def activate(
        self, version: str, actor: str = "operator", force: bool = False,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Serve `version`. Every front door comes through here, so the rules (a failed gate
        refuses unless forced, a force needs a reason) and the audit entry are the same for
        the CLI, the API and the daemon's own promotions."""
        if force and (not reason or not reason.strip()):
            raise ValidationError(f"forcing activation of {version} needs a reason (it is "
                                  "written to the audit log)")
        with self._lock:
            row = self.registry.get(version)
            if version == self.holder.version and row.status == "active":
                return {"version": version, "previous_version": version, "changed": False}
            removed = row.gate_report.removed if row.gate_report else None
            if removed:
                raise ValidationError(f"model {version} was removed ({removed.why}): "
                                      "its folder is gone")
            blocking = _blocking_gates(row)
            if blocking and not force:
                names = [g for g, _ in blocking]
                raise GateRefusedError(
                    version,
                    f"model {version} cannot be activated: "
                    + "; ".join(f"{g} gate {why}" for g, why in blocking)
                    + " (use --force with --reason to override)",
                    names,
                )
            if force and blocking:
                self.store.audit(actor, "model-force-activate", version,
                                 {"reason": reason, "overridden": dict(blocking)})
            done = self._switch(version, "activate", actor, reason) | {"forced": bool(blocking)}
            self.store.audit(actor, "model-activate", version,
                             {"force": force, "reason": reason,
                              "previous": done["previous_version"]})
            return done

    def rollback(
        self, version: str | None = None, actor: str = "operator", reason: str | None = None,
        action: str = "rollback",
    ) -> dict[str, Any]:
        """Back to the previous active version (one step), or to an earlier one by name."""
        with self._lock:
            current = self.store.active_version()
            target = version or self._previous_of(current)
            if target is None:
                raise NotFoundError("no earlier active version to roll back to")
            if target == current:
                raise ValidationError(f"model {target} is already the active version")
            row = self.registry.get(target)
            if not self.registry.ever_active(target):
                raise ValidationError(f"model {target} has never been active; roll back only "
                                      "to an earlier active version (activate a candidate "
                                      "instead)")
            if row.status == "rejected":
                why = row.gate_report.recovery if row.gate_report else None
                raise ValidationError(f"model {target} is rejected ({why or ''})")
            done = self._switch(target, action, actor, reason)
            self.store.audit(actor, f"model-{action}", target,
                             {"reason": reason, "previous": done["previous_version"]})
            return done

    def _switch(self, version: str, action: str, actor: str, reason: str | None
                ) -> dict[str, Any]:
        previous = self.store.active_version()
        engine = Engine.from_dir(self.registry.folder(version))  # load + warm, or raise
        faults.checkpoint("activate:loaded")
        old = self.holder.swap(engine)
        faults.checkpoint("activate:swapped")
        try:
            activation_id = self.store.record_activation(version, previous, action, actor,
                                                         reason)
        except Exception:
            self.holder.swap(old.engine)  # memory must agree with the persisted pointer
            raise
        faults.checkpoint("activate:recorded")
        log.info("%s %s -> %s by %s (%s)", action, previous, version, actor, reason)
        return {"version": version, "previous_version": previous, "action": action,
                "actor": actor, "reason": reason, "activation_id": activation_id,
                "load_s": engine.load_s, "changed": True}

    def _previous_of(self, current: str | None) -> str | None:
        for entry in self.store.activations():
            if entry.version == current:
                return entry.previous_version
        return None

    # -- automatic rollback --

    def auto_rollback_check(
        self, recent: int = 50, min_holes: int = 10, degradation_mm: float = 0.1,
    ) -> dict[str, Any]:
        """Compare the active model with the one before it on the most recently labelled holes;
        a per-point MAE worse by more than `degradation_mm` (or worse presence accuracy)
        rolls back, logged as auto-rollback."""
        with self._lock:
            current = self.store.active_version()
            previous = self._previous_of(current)
            out: dict[str, Any] = {"active": current, "previous": previous,
                                   "degradation_mm": degradation_mm}
            if current is None or previous is None:
                return out | {"status": "skipped", "why": "no previous version to compare with"}
            labels = sorted(self.store.latest_labels(), key=lambda r: r.at,
                            reverse=True)[:recent]
            if len(labels) < min_holes:
                return out | {"status": "skipped",
                              "why": f"{len(labels)} labelled hole(s), {min_holes} needed"}
            traces = [self.store.get_trace(r.hole_id) for r in labels]
            truth = [points_of(r) for r in labels]
            try:
                before = Engine.from_dir(self.registry.folder(previous))
            except ApplianceError as exc:
                return out | {"status": "skipped", "why": f"previous model unusable: {exc}"}
            now_scores = score(self.holder.current().estimate_many(traces), truth)
            before_scores = score(before.estimate_many(traces), truth)
            worse = _degradations(now_scores, before_scores, degradation_mm)
            out |= {"holes": len(labels), "active_scores": now_scores,
                    "previous_scores": before_scores, "problems": worse}
            if not worse:
                return out | {"status": "ok"}
            switched = self.rollback(previous, SYSTEM, "auto-rollback: " + "; ".join(worse),
                                     action="auto-rollback")
            return out | {"status": "rolled back", "activation": switched}

    # -- shadow scoring --

    def set_shadow(self, version: str | None, actor: str = "operator") -> str | None:
        """Run `version` beside the active model on new holes (None stops it)."""
        with self._lock:
            if version is None:
                self._shadow = None
            else:
                self.registry.get(version)
                self._shadow = ActiveModel(Engine.from_dir(self.registry.folder(version)))
            self.store.audit(actor, "model-shadow", version, None)
            return version

    @property
    def shadow_version(self) -> str | None:
        return self._shadow.version if self._shadow else None

    def shadow_report(self) -> dict[str, Any]:
        """Served vs shadow predictions on holes that have both, scored where labelled."""
        served = {p.hole_id: p.estimate for p in self.store.latest_predictions(shadow=False)}
        shadow = {p.hole_id: p.estimate for p in self.store.latest_predictions(shadow=True)}
        both = sorted(set(served) & set(shadow))
        labels = {r.hole_id: r for r in self.store.latest_labels()}
        labelled = [h for h in both if h in labels]
        out: dict[str, Any] = {"holes": len(both), "labelled": len(labelled),
                               "shadow_versions": sorted({str(shadow[h].model_version)
                                                          for h in both})}
        if labelled:
            truth = [points_of(labels[h]) for h in labelled]
            out["served"] = score([_as_estimate(served[h]) for h in labelled], truth)
            out["shadow"] = score([_as_estimate(shadow[h]) for h in labelled], truth)
        return out

    # -- start-up --

    def _bootstrap_baseline(self) -> None:
        if not (self.baseline_dir / "manifest.json").is_file():
            log.info("no shipped baseline at %s: serving the rule-based estimator",
                     self.baseline_dir)
            return
        row = self.registry.register(self.baseline_dir, SYSTEM)
        if row.status == "rejected":
            blocking = row.gate_report.blocking if row.gate_report else ()
            log.error("shipped baseline %s failed its integrity check: %s", row.version,
                      "; ".join(f"{g.gate}: {g.summary}" for g in blocking))
            return
        self._switch(row.version, "activate", SYSTEM, "shipped baseline, first start")

    def _load_active(self) -> None:
        """Load the persisted active version; if it cannot load, the latest earlier one that
        can (logged as a rollback by system); else serve the rule-based estimator."""
        active = self.store.active_version()
        log_entries = self.store.activations()
        # recovery may have rejected an active version whose folder vanished: it was the last
        lost = active or (log_entries[0].version if log_entries else None)
        status = {r.version: r.status for r in self.registry.versions()}
        order = [active] if active else []
        for entry in log_entries:
            for v in (entry.version, entry.previous_version):
                if v and v not in order and status.get(v) not in (None, "rejected"):
                    order.append(v)
        failures: list[str] = []
        for version in order:
            try:
                engine = Engine.from_dir(self.registry.folder(version))
            except Exception as exc:  # any load failure: try the next one
                failures.append(f"{version}: {exc}")
                continue
            self.holder.swap(engine)
            if version != active:
                reason = "recovery: " + ("; ".join(failures) or f"folder of {lost} missing")
                self.store.record_activation(version, lost, "rollback", SYSTEM, reason)
                if active:
                    self.store.update_model(active, status="rejected")
            return
        self.holder.swap(None)
        if failures:
            self.store.audit(SYSTEM, "model-load-failed", active, {"failures": failures})


def _blocking_gates(row: ModelVersion) -> list[tuple[str, str]]:
    report = row.gate_report
    gates = {g.gate: g for g in report.gates} if report else {}
    blocking = [(name, f"{g.status}: {g.summary}") for name, g in gates.items() if g.blocking]
    if report is not None and report.recovery:
        blocking.append(("integrity", f"fail: {report.recovery}"))
    missing = [g for g in FULL_GATES if g not in gates]
    if missing and not blocking:
        blocking.append((missing[0], "not run: run `appliance models gate "
                         f"{row.version}` first"))
    return blocking


def _degradations(now: dict[str, Any], before: dict[str, Any], tol: float) -> list[str]:
    problems = []
    for name in POINT_NAMES:
        a, b = now["points"][name]["mae_mm"], before["points"][name]["mae_mm"]
        if a is not None and b is not None and a > b + tol:
            problems.append(f"{name} MAE {a:.3f} mm vs {b:.3f} mm before (+{tol} allowed)")
    if now["presence_accuracy"] < before["presence_accuracy"]:
        problems.append(f"presence accuracy {now['presence_accuracy']:.3f} vs "
                        f"{before['presence_accuracy']:.3f} before")
    return problems


def _as_estimate(estimate: Estimate) -> DepthEstimate:
    return DepthEstimate(**msgspec.structs.asdict(estimate))
