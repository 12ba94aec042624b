"""Promotion gates for a candidate model folder; each gives a structured GateResult.

run_gates(folder, reference, exam, config) -> (GateReport, Engine | None): integrity first
(without it nothing else can be trusted), then parity, accuracy regression and latency.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from appliance.config import GateConfig
from appliance.engine.ensemble import Engine
from appliance.gates.accuracy import ExamHole, check_accuracy
from appliance.gates.integrity import check_integrity
from appliance.gates.latency import check_latency
from appliance.gates.parity import check_parity
from appliance.gates.report import (
    FAIL,
    INSUFFICIENT,
    PASS,
    SKIPPED,
    GateReport,
    GateResult,
)
from appliance.trace import Trace

GATE_NAMES = ("integrity", "parity", "accuracy", "latency")

__all__ = [
    "FAIL", "GATE_NAMES", "INSUFFICIENT", "PASS", "SKIPPED", "GateReport", "GateResult",
    "check_accuracy", "check_integrity", "check_latency", "check_parity", "run_gates",
]


def run_gates(
    folder: str | Path,
    reference: Engine | None,
    exam: Sequence[ExamHole] = (),
    config: GateConfig | None = None,
    timing_traces: Sequence[Trace] = (),
) -> tuple[GateReport, Engine | None]:
    """Every gate on the candidate in `folder`, compared with `reference` (the active model).

    Latency is timed on the exam holes, else on `timing_traces` (e.g. recent holes).
    """
    config = config or GateConfig()
    integrity, engine, probe = check_integrity(folder)
    version = _version_of(folder, engine)
    compared = reference.version if reference is not None else None
    if engine is None or probe is None:
        skipped = tuple(GateResult(g, SKIPPED, "integrity failed") for g in GATE_NAMES[1:])
        return GateReport(version, (integrity, *skipped), compared), None
    parity = check_parity(engine, probe)
    accuracy = check_accuracy(engine, reference, exam, config.accuracy_tolerance_mm,
                              config.min_exam)
    traces = [h.trace for h in exam] or list(timing_traces)
    latency = check_latency(engine, reference, traces, factor=config.latency_factor)
    return GateReport(version, (integrity, parity, accuracy, latency), compared), engine


def _version_of(folder: str | Path, engine: Engine | None) -> str:
    if engine is not None:
        return engine.version
    # The folder may be too broken to read a manifest; its name is the registry's version.
    return Path(folder).name
