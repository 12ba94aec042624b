"""Review priority: the calibrated chance that an estimate is wrong, one number per hole.

"Wrong" is what an operator would have to correct: a point more than 0.5 mm off, or a
point reported where there is none (or missed). Member spread alone cannot find those holes:
members trained alike agree to 0.01-0.03 mm on nearly every hole, wrong or right. The
evidence that does is combined here, per hole (the largest over its three points):

- presence_ambiguity: 1 - |2p - 1| of the members' mean presence (1 at p = 0.5);
- competition: the members' score mass outside the located peak (another place scored too);
- majority_spread: log(1 + range / 0.1 mm) of the voting members' depths without the one
  furthest from their median (with three or more): the members' doubt about the answer
  served, which is their median, so one member astray does not move it (a x0.4 rig: one of
  five members put the transition on the exit of 40 holes the median answered right);
- spread: the same over all voting members. Computed for calibrations fitted with it, but
  no longer fitted: out of fold one member answers each hole and the whole ensemble's range
  stands in for its doubt, so a wide range there mostly says "the one answering is the
  member astray", which is wrong out of fold and outvoted when served;
- rules_presence: the model and the rule-based reading disagree on whether a point exists;
- rules_distance: both place it, this far apart (mm, capped at 2);
- rival_ramp: a competing ramp of the point's direction: exp(-d / 2 mm) for another ramp
  d away, times how big its step is next to the step of the point's own ramp (capped at 1):
  a bigger rise shortly after an "entry" says the entry may have been read on noise;
- off_ramp: a reported point with no ramp of its direction within reach;
- out_of_order: the members placed two points on one crossing, or out of order (the answer
  then drops the transition, as the rules do, but the hole is suspect);
- weak_step: exp(-snr / 10) for the point whose ramp steps least above the trace's noise
  (snr = the ramp's level change / the torque noise): a point read on a wiggle, as in a
  trace of air only. Scale-free: another drill's gain moves step and noise together.
- below_no_load: a point reported on a hole whose torque never reaches a quarter of the
  drill's no-load current: log10(0.25 / their ratio) (Reading.per_no_load), capped at 2; 0
  from a quarter up, or with no point. A drill that logs every current x2.5 lifts air
  wobble over the convention's 0.2 A entry, yet it stays a few % of its no-load current
  (on the same scale). Every cut of the 120 real logs reaches 1.15 times it or more, the
  generator's cuts 0.21 or more (0.4 % of them under a quarter), its air fragments 0.12 at
  most.

A calibration weighs the features it names (stored with it): one fitted before a feature
was added, or with one since retired, is served as it was fitted.

A logistic model maps them to a probability. It is fitted at training time on out-of-fold
predictions (each hole answered by members that never trained on it, augmented copies
included so that there are wrong answers to learn from) and stored in the model folder's
manifest ("review"); folders from before carry none and get DEFAULT, a hand-set weighting
that ranks but is not calibrated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.features.decode import sigmoid
from appliance.points import POINT_NAMES, DepthPoints

# every feature this code computes, in the order of features()'s vector
ALL_FEATURES: tuple[str, ...] = ("presence_ambiguity", "competition", "spread",
                                 "rules_presence", "rules_distance", "rival_ramp", "off_ramp",
                                 "out_of_order", "weak_step", "below_no_load",
                                 "majority_spread")
# what a calibration is fitted on now (see the module docstring for "spread")
FEATURES: tuple[str, ...] = tuple(n for n in ALL_FEATURES if n != "spread")

WRONG_MM = 0.5
RIVAL_SCALE_MM = 2.0
SNR_SCALE = 10.0
OWN_RAMP_MM = 0.25  # a point this close to a ramp's span sits on that ramp
NO_LOAD_SHARE = 0.25  # below_no_load: a cut reaches this share of the no-load current ...
NO_LOAD_CAP = 2.0  # ... and a hundredth of it or less counts as a hundredth


@dataclass(frozen=True)
class PointEvidence:
    """What one hole's members, rules and ramps say, per point (POINT_NAMES order)."""

    presence: np.ndarray  # [3] members' mean presence probability
    mass: np.ndarray  # [3] members' mean score mass in the located peak, 0..1
    spread_mm: np.ndarray  # [3] range of the voting members' depths (0 where absent)
    majority_spread_mm: np.ndarray  # [3] the same without the member furthest from the median
    on_ramp: np.ndarray  # [3] bool: a reported point that sits on a ramp's crossing


def features(ev: PointEvidence, points: DepthPoints, rules: DepthPoints | None,
             rivals: Mapping[str, Sequence[tuple[float, float, float]]],
             out_of_order: bool = False, noise_a: float | None = None,
             per_no_load: float | None = None) -> np.ndarray:
    """The ALL_FEATURES vector of one hole. `rivals`: per point name, the ramps of its direction
    as (start mm, end mm, level change A) (appliance.estimators.snap.ramp_spans);
    `noise_a`: the trace's torque noise, `per_no_load`: its torque over the drill's no-load
    current (the rules' reading of both)."""
    f = np.zeros(len(ALL_FEATURES))
    p = np.asarray(ev.presence, dtype=np.float64)
    f[0] = float(np.max(1.0 - np.abs(2.0 * p - 1.0)))
    present = np.array([points.get(n) is not None for n in POINT_NAMES])
    if present.any():
        f[1] = float(np.max(1.0 - np.asarray(ev.mass)[present]))
        f[2] = float(np.log1p(np.max(np.asarray(ev.spread_mm)[present]) / 0.1))
        f[10] = float(np.log1p(np.max(np.asarray(ev.majority_spread_mm)[present]) / 0.1))
        f[6] = float(np.any(~np.asarray(ev.on_ramp)[present]))
    f[7] = float(out_of_order or points.order_problem() is not None)
    for name in POINT_NAMES:
        v = points.get(name)
        r = rules.get(name) if rules is not None else None
        if rules is not None and (v is None) != (r is None):
            f[3] = 1.0
        if v is not None and r is not None:
            f[4] = max(f[4], min(abs(v - r), 2.0))
        if v is not None:
            f[5] = max(f[5], _rival(v, rivals.get(name, ())))
            if noise_a:
                step = _own_step(v, rivals.get(name, ()))
                f[8] = max(f[8], float(np.exp(-(step / noise_a) / SNR_SCALE)))
    if present.any() and per_no_load is not None and per_no_load > 0:
        f[9] = float(np.clip(np.log10(NO_LOAD_SHARE / per_no_load), 0.0, NO_LOAD_CAP))
    return f


def _own_step(at_mm: float, ramps: Sequence[tuple[float, float, float]]) -> float:
    """The level change of the ramp a point sits on (0: on none)."""
    return max([h for lo, hi, h in ramps if max(lo - at_mm, at_mm - hi, 0.0) <= OWN_RAMP_MM],
               default=0.0)


def _rival(at_mm: float, ramps: Sequence[tuple[float, float, float]]) -> float:
    gaps = [max(lo - at_mm, at_mm - hi, 0.0) for lo, hi, _ in ramps]
    own = _own_step(at_mm, ramps)
    score = 0.0
    for (_, _, h), g in zip(ramps, gaps, strict=True):
        if g > OWN_RAMP_MM:
            score = max(score, float(np.exp(-g / RIVAL_SCALE_MM)) * min(1.0, h / max(own, 1e-6)))
    return score


def is_wrong(pred: DepthPoints, truth: DepthPoints, tol_mm: float = WRONG_MM) -> bool:
    """A point more than tol_mm off, or a presence error."""
    for name in POINT_NAMES:
        a, b = pred.get(name), truth.get(name)
        if (a is None) != (b is None):
            return True
        if a is not None and b is not None and abs(a - b) > tol_mm:
            return True
    return False


def _columns(x: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The `names` columns of x [N, ALL_FEATURES]."""
    return np.asarray(x, dtype=np.float64)[:, [ALL_FEATURES.index(n) for n in names]]


@dataclass(frozen=True)
class ReviewCalibration:
    """Logistic model over the standardised features it names."""

    features: tuple[str, ...]  # of ALL_FEATURES: what it was fitted on
    coef: tuple[float, ...]
    intercept: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    fitted: bool  # False: the hand-set DEFAULT
    n: int = 0  # holes it was fitted on
    n_wrong: int = 0
    brier: float | None = None  # on those holes
    reliability: tuple[tuple[float, float, int], ...] = ()  # (mean predicted, observed, n)

    def priority(self, f: np.ndarray) -> float:
        return float(self.priorities(np.asarray(f)[None, :])[0])

    def priorities(self, x: np.ndarray) -> np.ndarray:
        """Per row of x [N, ALL_FEATURES]."""
        z = (_columns(x, self.features) - np.asarray(self.mean)) / np.asarray(self.scale)
        return sigmoid(self.intercept + z @ np.asarray(self.coef))

    def to_dict(self) -> dict[str, object]:
        return {"features": list(self.features), "coef": list(self.coef),
                "intercept": self.intercept, "mean": list(self.mean),
                "scale": list(self.scale), "fitted": self.fitted, "n": self.n,
                "n_wrong": self.n_wrong, "brier": self.brier,
                "reliability": [list(r) for r in self.reliability]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReviewCalibration:
        """From parsed manifest JSON: a value of the wrong kind raises TypeError or
        ValueError in the conversions below, which the caller reports against the folder."""
        names = tuple(d.get("features") or ())
        unknown = [n for n in names if n not in ALL_FEATURES]
        if not names or unknown or len(set(names)) != len(names):
            raise ValueError(f"review calibration features {list(names)} are not distinct "
                             f"features of this code's {list(ALL_FEATURES)}")

        def floats(key: str) -> tuple[float, ...]:
            vals = tuple(float(v) for v in d[key])
            if len(vals) != len(names) or not all(np.isfinite(vals)):
                raise ValueError(f"review calibration {key!r} must hold {len(names)} "
                                 "finite numbers")
            return vals

        scale = floats("scale")
        if min(scale) <= 0:
            raise ValueError("review calibration 'scale' must be positive")
        rel = d.get("reliability") or ()
        return cls(features=names, coef=floats("coef"), intercept=float(d["intercept"]),
                   mean=floats("mean"), scale=scale, fitted=bool(d.get("fitted", True)),
                   n=int(d.get("n") or 0), n_wrong=int(d.get("n_wrong") or 0),
                   brier=None if d.get("brier") is None else float(d["brier"]),
                   reliability=tuple((float(a), float(b), int(c))
                                     for a, b, c in rel))


# Hand-set for folders without a calibration: ambiguity and disagreement with the rules
# weigh most; the numbers rank holes, they are not probabilities. Set over the features of
# its time (the whole range's spread, not the majority's), and kept so: folders served
# with it keep their order.
DEFAULT = ReviewCalibration(features=ALL_FEATURES[:10],
                            coef=(2.0, 1.0, 0.5, 1.0, 1.0, 0.5, 0.5, 3.0, 1.0, 1.0),
                            intercept=-3.0, mean=(0.0,) * 10, scale=(1.0,) * 10, fitted=False)


def fit(x: np.ndarray, wrong: np.ndarray, l2: float = 1.0, bins: int = 5,
        names: tuple[str, ...] = FEATURES) -> ReviewCalibration:
    """Logistic regression (Newton steps, L2 on the coefficients) of `wrong` on the `names`
    columns of x [N, ALL_FEATURES]. With no wrong (or no right) hole there is nothing to
    learn from: DEFAULT."""
    x = _columns(x, names)
    y = np.asarray(wrong, dtype=np.float64)
    n_wrong = int(y.sum())
    if len(y) == 0 or n_wrong == 0 or n_wrong == len(y):
        return DEFAULT
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0  # a constant feature (e.g. no rules on this set): weight ~0
    z = np.column_stack([np.ones(len(x)), (x - mean) / scale])
    w = np.zeros(z.shape[1])
    w[0] = float(np.log(n_wrong / (len(y) - n_wrong)))
    reg = np.full(z.shape[1], l2)
    reg[0] = 0.0

    def loss(v: np.ndarray) -> float:
        m = z @ v
        return float(np.sum(np.logaddexp(0.0, m) - y * m) + 0.5 * np.sum(reg * v * v))

    current = loss(w)
    for _ in range(100):
        p = sigmoid(z @ w)
        grad = z.T @ (p - y) + reg * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(reg) + 1e-6 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        # Newton steps with backtracking: a plain step can overshoot far where a feature
        # nearly separates the wrong holes, and then never come back
        t = 1.0
        while t > 1e-6 and loss(w - t * step) > current:
            t *= 0.5
        w = w - t * step
        new = loss(w)
        if current - new < 1e-10 * max(1.0, abs(current)):
            current = new
            break
        current = new
    p = sigmoid(z @ w)
    return ReviewCalibration(features=names, coef=tuple(float(v) for v in w[1:]),
                             intercept=float(w[0]),
                             mean=tuple(float(v) for v in mean),
                             scale=tuple(float(v) for v in scale), fitted=True, n=len(y),
                             n_wrong=n_wrong, brier=round(float(np.mean((p - y) ** 2)), 5),
                             reliability=reliability(p, y, bins))


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 5
                ) -> tuple[tuple[float, float, int], ...]:
    """(mean predicted, observed share wrong, n) per quantile bin of the prediction."""
    order = np.argsort(p, kind="stable")
    out = []
    for part in np.array_split(order, min(bins, len(order))):
        if len(part):
            out.append((round(float(p[part].mean()), 4), round(float(y[part].mean()), 4),
                        int(len(part))))
    return tuple(out)

