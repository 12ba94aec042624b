"""The pieces of one drift channel: robust references per key and a two-sided CUSUM.

A channel (e.g. "torque") sees several keyed values per hole (one per program step of the
hole's program). Each key learns its own reference from its first values; a later value is
standardised against it (median and a robust spread, floored, clipped), and the channel's
value for the hole is the mean over its keys, which the CUSUM accumulates. Pure Python
floats, so that a replay gives the same statistics bit for bit and a hole costs
microseconds.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from statistics import median, quantiles

MAD_TO_SD = 1.4826  # the MAD of a normal sample times this estimates its sd
DECILE_RANGE_TO_SD = 2.5631  # ... and its 10-90 % range divided by this
LAPLACE = 0.5  # pseudo-count: a rate learnt from 30 holes without a miss is not 0
TOLERANCE_SDS = 4.0  # a value this many sds off its usual one is off

Value = float | bool | str | tuple[float, ...]  # what a key of some channel holds
Item = tuple[Hashable, Value]  # (key, value) of one hole


class NumericReference:
    """Median and spread of a key's first values."""

    __slots__ = ("values", "center", "scale")

    def __init__(self) -> None:
        self.values: list[float] = []
        self.center: float | None = None
        self.scale = 1.0

    @property
    def frozen(self) -> bool:
        return self.center is not None

    def add(self, value: float) -> None:
        self.values.append(value)

    def deviations(self) -> list[float]:
        """|value - median| of the values learnt so far (for a channel's pooled spread)."""
        center = median(self.values)
        return [abs(v - center) for v in self.values]

    def freeze(self, floor: float) -> None:
        self.center = median(self.values)
        self.scale = max(spread(self.values), floor)
        self.values = []  # a frozen reference never moves: its values are done with

    def deviation(self, value: float) -> float:
        assert self.center is not None
        return (value - self.center) / self.scale


def spread(values: list[float]) -> float:
    """A robust sd: the MAD's, or the 10-90 % range's when that is wider. The two agree on
    a normal sample; a key whose values come in two modes (an estimator that reads one job
    two ways) gets the wider one, so that the other mode is no drift."""
    if len(values) < 2:
        return 0.0
    center = median(values)
    mad = median(abs(v - center) for v in values)
    deciles = quantiles(values, n=10, method="inclusive")
    return max(MAD_TO_SD * mad, (deciles[-1] - deciles[0]) / DECILE_RANGE_TO_SD)


class RateReference:
    """The usual category of a key (e.g. its presence pattern) and how often a value was
    another one; a value then deviates by (missed - rate) / sd of that Bernoulli rate."""

    __slots__ = ("values", "mode", "rate", "scale")

    def __init__(self) -> None:
        self.values: list[Value] = []
        self.mode: Value | None = None
        self.rate = 0.0
        self.scale = 1.0

    @property
    def frozen(self) -> bool:
        return self.mode is not None

    def add(self, value: Value) -> None:
        self.values.append(value)

    def freeze(self, floor: float) -> None:
        counts: dict[Value, int] = {}
        for v in self.values:
            counts[v] = counts.get(v, 0) + 1
        # ties go to the category seen first: the dict keeps arrival order
        mode = max(counts, key=lambda v: counts[v])
        n = len(self.values)
        rate = (n - counts[mode] + LAPLACE) / (n + 2 * LAPLACE)
        self.mode, self.rate = mode, rate
        self.scale = max(math.sqrt(rate * (1.0 - rate)), floor)
        self.values = []

    def deviation(self, value: Value) -> float:
        return ((1.0 if value != self.mode else 0.0) - self.rate) / self.scale


class ToleranceReference:
    """The usual value of each component of a small vector (e.g. a stack's thicknesses)
    and how often a value was off it by more than a tolerance: an estimator that reads
    one job two ways (a misread entry now and then) shows as a rate, not as a shift, and a
    new stack as that rate jumping."""

    __slots__ = ("values", "centers", "tolerances", "rate", "scale", "min_tolerance")

    def __init__(self, min_tolerance: float) -> None:
        self.values: list[tuple[float, ...]] = []
        self.centers: tuple[float, ...] | None = None
        self.tolerances: tuple[float, ...] = ()
        self.rate = 0.0
        self.scale = 1.0
        self.min_tolerance = min_tolerance

    @property
    def frozen(self) -> bool:
        return self.centers is not None

    def add(self, value: tuple[float, ...]) -> None:
        self.values.append(value)

    def freeze(self, floor: float) -> None:
        width = len(self.values[0])
        centers, tolerances = [], []
        for i in range(width):
            col = [v[i] for v in self.values if math.isfinite(v[i])]
            c = median(col) if col else math.nan
            mad = median(abs(v - c) for v in col) if col else 0.0
            centers.append(c)
            tolerances.append(max(self.min_tolerance, TOLERANCE_SDS * MAD_TO_SD * mad))
        self.centers, self.tolerances = tuple(centers), tuple(tolerances)
        misses = sum(self.missed(v) for v in self.values)
        n = len(self.values)
        self.rate = (misses + LAPLACE) / (n + 2 * LAPLACE)
        self.scale = max(math.sqrt(self.rate * (1.0 - self.rate)), floor)
        self.values = []

    def missed(self, value: tuple[float, ...]) -> bool:
        assert self.centers is not None
        return any(math.isfinite(v) and math.isfinite(c) and abs(v - c) > t
                   for v, c, t in zip(value, self.centers, self.tolerances, strict=True))

    def deviation(self, value: tuple[float, ...]) -> float:
        return ((1.0 if self.missed(value) else 0.0) - self.rate) / self.scale


Reference = NumericReference | RateReference | ToleranceReference


class Cusum:
    """Two-sided CUSUM of standardised values: drift up and drift down accumulate apart,
    each less the slack per hole; the statistic is the larger of the two."""

    __slots__ = ("up", "down")

    def __init__(self) -> None:
        self.up = 0.0
        self.down = 0.0

    def update(self, z: float, slack: float) -> float:
        self.up = max(0.0, self.up + z - slack)
        self.down = max(0.0, self.down - z - slack)
        return self.statistic

    @property
    def statistic(self) -> float:
        return max(self.up, self.down)


@dataclass(frozen=True)
class Limits:
    """The parts of the drift config a channel needs (see DriftConfig)."""

    slack: float
    clip: float
    min_reference: int


class Channel:
    """One named drift signal: keyed references, the CUSUM over their mean deviation, and
    whether it crossed its threshold since the last reset (an alarm holds until then).

    A key learns from a few values (about ten), too few for its own spread to be trusted:
    each key's scale is at least the channel's pooled spread (every key's values about its
    own median, pooled when the drill's learning ends) and the channel's floor."""

    __slots__ = ("kind", "floor", "tolerance", "refs", "cusum", "alarm")

    def __init__(self, kind: str, floor: float, tolerance: float = 0.0) -> None:
        self.kind = kind  # "numeric" | "rate" | "tolerance"
        self.floor = floor
        self.tolerance = tolerance
        self.refs: dict[Hashable, Reference] = {}
        self.cusum = Cusum()
        self.alarm = False

    @property
    def armed(self) -> bool:
        return any(r.frozen for r in self.refs.values())

    def observe(self, items: list[Item], learning: bool,
                limits: Limits) -> float | None:
        """Learn or test each keyed value; the CUSUM statistic when any was tested.

        While the drill learns every value joins its key's reference; afterwards a key
        still short of min_reference values goes on learning on its own (a program seen
        for the first time) and freezes once it has them. A frozen reference never moves:
        letting later holes in would let a slow drift, or the first holes of a change,
        teach the reference what it should flag."""
        total, n = 0.0, 0
        for key, value in items:
            ref = self.refs.get(key)
            if ref is None:
                ref = self._new_reference()
                self.refs[key] = ref
            if ref.frozen:
                z = ref.deviation(value)  # type: ignore[arg-type]
                total += min(max(z, -limits.clip), limits.clip)
                n += 1
                continue
            ref.add(value)  # type: ignore[arg-type]
            if not learning and len(ref.values) >= limits.min_reference:
                ref.freeze(self.floor)
        if n == 0:
            return None
        return self.cusum.update(total / n, limits.slack)

    def end_learning(self, min_reference: int) -> None:
        ready = [r for r in self.refs.values()
                 if not r.frozen and len(r.values) >= min_reference]
        if self.kind == "numeric":
            pooled = [d for r in ready if isinstance(r, NumericReference)
                      for d in r.deviations()]
            if pooled:
                self.floor = max(self.floor, MAD_TO_SD * median(pooled))
        for ref in ready:
            ref.freeze(self.floor)

    def _new_reference(self) -> Reference:
        if self.kind == "numeric":
            return NumericReference()
        if self.kind == "rate":
            return RateReference()
        return ToleranceReference(self.tolerance)
