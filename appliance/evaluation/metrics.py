"""The metric arithmetic of ../shared/docs/depth-points.md, in one place.

Per point: MAE (mm) over holes where both label and estimate exist, the share within 0.25
and 0.5 mm, presence confusion (tp: both present, fp: estimated where the label is null,
fn: missed, tn: both null), always with the number of holes behind each figure; overall
and per group (source folder, variant, stack type, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from appliance.points import POINT_NAMES, DepthEstimate, DepthPoints


@dataclass(frozen=True)
class PointMetrics:
    n: int  # holes where both label and estimate exist
    mae_mm: float | None
    within_0_25: float | None
    within_0_5: float | None
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def presence_accuracy(self) -> float | None:
        total = self.tp + self.fp + self.fn + self.tn
        return (self.tp + self.tn) / total if total else None

    def as_dict(self) -> dict[str, Any]:
        return {"mae_mm": self.mae_mm, "within_0_25": self.within_0_25,
                "within_0_5": self.within_0_5, "n": self.n}

    def presence_dict(self) -> dict[str, Any]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn,
                "accuracy": self.presence_accuracy}


@dataclass(frozen=True)
class GroupReport:
    n: int  # holes
    points: dict[str, PointMetrics]
    holes_all_right: int = 0  # holes whose three presences are all right

    @property
    def presence_accuracy(self) -> float | None:
        """Share of (hole, point) pairs whose presence is right."""
        right = sum(m.tp + m.tn for m in self.points.values())
        total = sum(m.tp + m.fp + m.fn + m.tn for m in self.points.values())
        return right / total if total else None

    @property
    def holes_presence_right(self) -> float | None:
        """Share of holes with all three presences right."""
        return None if self.n == 0 else self.holes_all_right / self.n

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "points": {p: m.as_dict() for p, m in self.points.items()},
            "presence": {**{p: m.presence_dict() for p, m in self.points.items()},
                         "accuracy": self.presence_accuracy,
                         "holes_all_right": self.holes_presence_right},
        }


@dataclass(frozen=True)
class EvalReport:
    overall: GroupReport
    # group key (source, variant, stack, ...) -> group value -> its report
    groups: dict[str, dict[str, GroupReport]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.overall.n

    @property
    def points(self) -> dict[str, PointMetrics]:
        return self.overall.points

    def as_dict(self) -> dict[str, Any]:
        out = self.overall.as_dict()
        out["groups"] = {key: {val: rep.as_dict() for val, rep in sorted(by.items())}
                         for key, by in self.groups.items()}
        return out


def _points(x: DepthPoints | DepthEstimate) -> DepthPoints:
    return x.points if isinstance(x, DepthEstimate) else x


def _group(estimates: Sequence[DepthPoints], labels: Sequence[DepthPoints]) -> GroupReport:
    points: dict[str, PointMetrics] = {}
    for name in POINT_NAMES:
        errs: list[float] = []
        tp = fp = fn = tn = 0
        for e, lab in zip(estimates, labels, strict=True):
            ev, lv = e.get(name), lab.get(name)
            if ev is not None and lv is not None:
                tp += 1
                errs.append(abs(ev - lv))
            elif ev is not None:
                fp += 1
            elif lv is not None:
                fn += 1
            else:
                tn += 1
        n = len(errs)
        points[name] = PointMetrics(
            n=n,
            mae_mm=sum(errs) / n if n else None,
            within_0_25=sum(x <= 0.25 for x in errs) / n if n else None,
            within_0_5=sum(x <= 0.5 for x in errs) / n if n else None,
            tp=tp, fp=fp, fn=fn, tn=tn,
        )
    right = sum(all((e.get(p) is None) == (lab.get(p) is None) for p in POINT_NAMES)
                for e, lab in zip(estimates, labels, strict=True))
    return GroupReport(n=len(labels), points=points, holes_all_right=right)


def evaluate(estimates: list[DepthPoints | DepthEstimate], labels: list[DepthPoints],
             groups: list[dict[str, str]] | None = None) -> EvalReport:
    """Score estimates against labels (same order); `groups[i]` names hole i's groups,
    e.g. {"source": "tuhh-v4", "variant": "v4", "stack": "cfrp/ti"}."""
    if len(estimates) != len(labels):
        raise ValueError(f"{len(estimates)} estimates for {len(labels)} labels")
    if groups is not None and len(groups) != len(labels):
        raise ValueError(f"{len(groups)} group entries for {len(labels)} labels")
    est = [_points(e) for e in estimates]
    labs = [_points(lab) for lab in labels]
    by: dict[str, dict[str, list[int]]] = {}
    for i, g in enumerate(groups or []):
        for key, val in g.items():
            by.setdefault(key, {}).setdefault(str(val), []).append(i)
    grouped = {key: {val: _group([est[i] for i in idx], [labs[i] for i in idx])
                     for val, idx in vals.items()} for key, vals in by.items()}
    return EvalReport(overall=_group(est, labs), groups=grouped)
