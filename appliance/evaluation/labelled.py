"""Run an estimator over the files of a labels.csv and score it (what `appliance evaluate`
does): each file parsed with appliance.ingest.parse_file; a file that fails is reported,
not fatal."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from appliance.errors import ApplianceError
from appliance.estimators import Estimator
from appliance.evaluation.labels import LabelRow, read_labels
from appliance.evaluation.metrics import EvalReport, evaluate
from appliance.points import POINT_NAMES, DepthEstimate


@dataclass(frozen=True)
class LabelledRun:
    report: EvalReport
    failures: list[dict[str, str]] = field(default_factory=list)  # {"path", "error"}
    holes: list[dict[str, Any]] = field(default_factory=list)  # per hole: label, estimate, groups


def evaluate_labelled(estimator: Estimator, labels_csv: str | Path,
                      root: str | Path | None = None) -> LabelledRun:
    """Score `estimator` on the files a labels.csv names (relative to the CSV's folder,
    or to `root`). Groups: source (folder), variant, and stack (synthetic labels)."""
    from appliance.ingest import parse_file

    csv_path = Path(labels_csv)
    base = Path(root) if root is not None else csv_path.parent
    rows = read_labels(csv_path)
    traces, kept, failures = [], [], []
    for row in rows:
        try:
            traces.append(parse_file(base / row.path))
            kept.append(row)
        except (ApplianceError, OSError) as exc:
            failures.append({"path": row.path, "error": str(exc)})
    estimates = estimator.estimate_many(traces) if traces else []
    groups = [_groups(row, t.meta.variant) for row, t in zip(kept, traces, strict=True)]
    report = evaluate(list(estimates), [r.points for r in kept], groups)
    holes = [_hole(row, est, g) for row, est, g in zip(kept, estimates, groups, strict=True)]
    return LabelledRun(report, failures, holes)


def _groups(row: LabelRow, variant: str) -> dict[str, str]:
    parent = str(PurePosixPath(row.path.replace("\\", "/")).parent)
    g = {"source": parent if parent else ".", "variant": variant}
    if row.method == "synthetic" and row.notes:
        g["stack"] = row.notes  # synthetic labels carry the stack type in notes
    return g


def _hole(row: LabelRow, est: DepthEstimate, groups: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"path": row.path, **groups}
    for n in POINT_NAMES:
        lab, e = row.points.get(n), est.points.get(n)
        out[f"{n}_label"] = lab
        out[f"{n}_est"] = e
        out[f"{n}_err"] = None if lab is None or e is None else e - lab
    return out
