"""Model versions for the API and the job runner, over the serving room's facade.

Shows registered versions as clients see them (appliance.records: ModelSummary, ModelDetail,
without the box's paths) and adds what the daemon needs on top: register + gate a job's
candidate in one step, promotion when every gate passed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from appliance.engine.workers import Answer, Item, ProcessEstimator, WorkerFailed, answer_items
from appliance.errors import NotFoundError
from appliance.estimators.heuristic import remember_reading
from appliance.points import DepthEstimate
from appliance.records import (
    Activation,
    GateVerdict,
    ModelDetail,
    ModelSummary,
    ModelVersion,
    ShadowReport,
)
from appliance.redact import scrubbed, without_paths
from appliance.registry import ServingService
from appliance.services.batching import EstimateBatcher, serving_workers
from appliance.trace import Trace

log = logging.getLogger("appliance.models")


def estimate_processes(setting: int) -> int:
    """Worker processes for estimates: `setting` when >= 0 (0: all in the daemon's own
    process), else one per model thread of the batcher."""
    return serving_workers() if setting < 0 else setting


class ModelService:
    def __init__(self, serving: ServingService, processes: int = 0) -> None:
        self.serving = serving
        # with worker processes, each batch thread hands its batch to one (parsing, the
        # rules' reading, the model and the answer all run there, beyond this process's
        # interpreter lock); without, or when a worker fails, the thread answers it here
        self.workers = ProcessEstimator(processes) if processes > 0 else None
        self.batcher = EstimateBatcher(self._answer_batch, workers=serving_workers())

    def close(self) -> None:
        self.batcher.close()
        if self.workers is not None:
            self.workers.close()

    def _answer_batch(self, items: Sequence[Item]) -> list[Answer]:
        active = self.serving.holder.current()
        if self.workers is not None:
            folder = active.engine.manifest.folder if active.engine is not None else None
            try:
                done = self.workers.estimate(folder, items)
            except WorkerFailed as exc:
                log.warning("%s; this batch of %d answered in the daemon", exc, len(items))
            else:
                for i, reading in done.readings:
                    item = items[i]
                    if isinstance(item, Trace):
                        remember_reading(item, reading)
                return done.answers
        return answer_items(items, active.estimate_many)[0]

    # -- estimation ----------------------------------------------------------------------------
    def estimate(self, trace: Trace) -> DepthEstimate:
        """The active model's estimate; concurrent callers share one batched model call."""
        return self.batcher.estimate(trace)

    async def estimate_async(self, item: Item) -> DepthEstimate:
        """`estimate` for the event loop: awaits the batch without holding a thread. An
        Upload is parsed where the batch is answered; one that does not parse raises its
        IngestError."""
        return await asyncio.wrap_future(self.batcher.submit(item))

    def estimate_many(self, traces: Sequence[Trace]) -> list[DepthEstimate]:
        return self.serving.estimate_many(traces)

    def estimate_and_record_many(self, items: Sequence[tuple[str, Trace]]
                                 ) -> list[DepthEstimate]:
        """Stored holes estimated through the batcher (every model worker at once, beside
        the API's requests), each estimate stored as predict_and_record does."""
        futures = [self.batcher.submit(trace) for _, trace in items]
        out = [fut.result(timeout=120) for fut in futures]
        self.serving.record_many([(hole_id, trace, served) for (hole_id, trace), served
                                  in zip(items, out, strict=True)])
        return out

    def predict_and_record(self, hole_id: str, trace: Trace) -> DepthEstimate:
        """Estimate with the active model and store it (a shadow model's too, unserved)."""
        return self.serving.predict_and_record(hole_id, trace)

    def active_version(self) -> str | None:
        return self.serving.active_version

    # -- reads ---------------------------------------------------------------------------------
    def summary(self, model: ModelVersion, active: str | None) -> ModelSummary:
        """The version as clients see it: its folder left out, paths in its metrics shown
        relative to the home or by name."""
        return ModelSummary(
            version=model.version, parent=model.parent, architecture=model.architecture,
            created_at=model.created_at, status=model.status, active=model.version == active,
            dataset_hash=model.dataset_hash, gate_passed=model.gate_passed,
            metrics=scrubbed(model.metrics or {}, self.serving.home))

    def versions(self) -> list[ModelSummary]:
        active = self.active_version()
        return [self.summary(m, active) for m in self.serving.list_versions()]

    def active(self) -> ModelSummary:
        active = self.active_version()
        if active is None:
            raise NotFoundError("no model is active: the rule-based estimator answers")
        return self.summary(self.serving.show(active), active)

    def show(self, version: str) -> ModelDetail:
        model = self.serving.show(version)
        card_path = Path(model.path) / "README.md"
        card = card_path.read_text(encoding="utf-8", errors="replace") if (
            card_path.is_file()) else None
        # what was written on this box (a gate's folder, a failure's file, a card's paths)
        # is shown relative to the home or by name
        home = self.serving.home
        report = None if model.gate_report is None else msgspec.convert(
            scrubbed(msgspec.to_builtins(model.gate_report), home), GateVerdict)
        return ModelDetail(model=self.summary(model, self.active_version()),
                           card=None if card is None else without_paths(card, home),
                           gate_report=report, manifest=scrubbed(model.manifest or {}, home))

    def activations(self, limit: int) -> list[Activation]:
        return self.serving.history(limit)

    def folder(self, version: str) -> Path:
        return Path(self.serving.show(version).path)

    # -- changes -------------------------------------------------------------------------------
    def activate(self, version: str, actor: str, force: bool, reason: str | None
                 ) -> ModelSummary:
        self.serving.activate(version, actor=actor, force=force, reason=reason)
        return self.summary(self.serving.show(version), self.active_version())

    def rollback(self, version: str | None, actor: str, reason: str | None) -> ModelSummary:
        self.serving.rollback(version, actor=actor, reason=reason)
        active = self.active_version()
        assert active is not None
        return self.summary(self.serving.show(active), active)

    def shadow(self, version: str | None, actor: str) -> ShadowReport:
        """Run `version` beside the active model on new holes, unserved (None stops it)."""
        if version is not None:
            self.serving.show(version)  # NotFoundError for an unknown version
        self.serving.set_shadow(version, actor=actor)
        return self.shadow_report()

    def shadow_report(self) -> ShadowReport:
        report = self.serving.shadow_report()
        return ShadowReport(version=self.serving.shadow_version, holes=report["holes"],
                            labelled=report["labelled"],
                            shadow_versions=tuple(report["shadow_versions"]),
                            served=report.get("served"), shadow=report.get("shadow"))

    def adopt_candidate(self, folder: Path, actor: str, promote: bool,
                        auto_rollback_mm: float | None = None) -> dict[str, Any]:
        """Register a job's candidate, gate it, and activate it when asked and all gates pass.

        With auto_rollback_mm, a promoted model is checked at once against the one it replaced
        on the most recent confirmed holes and rolled back (logged as auto-rollback) when worse.
        """
        version = self.serving.register(folder, actor=actor).version
        report = self.serving.gate(version, actor=actor)
        passed = report.passed
        activated = False
        if promote and passed:
            self.serving.activate(version, actor=actor, force=False,
                                  reason="every gate passed (auto-promote)")
            activated = True
        result = {"candidate_version": version, "gate_passed": passed,
                  "failing_gates": [f"{g.gate}: {g.status}: {g.summary}"
                                    for g in report.blocking],
                  "activated": activated}
        if activated and auto_rollback_mm is not None:
            check = self.serving.auto_rollback_check(degradation_mm=auto_rollback_mm)
            result["auto_rollback"] = {k: check.get(k) for k in ("status", "why", "problems")}
            result["activated"] = check.get("status") != "rolled back"
        return result
