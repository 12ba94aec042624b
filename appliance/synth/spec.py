"""StackSpec: everything that decides one synthetic hole, and random_spec to draw one.

The ranges follow the real Setitec logs in ../shared/data/setitec: CFRP a few A, aluminium
in between, titanium tens of A at low RPM; programs switch to a slow step just before a
metal layer, steps roughly keep feed per revolution, and the tool backs off 0.1-1.4 mm at
a step change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from appliance.trace import ProgramStep

MATERIALS: tuple[str, ...] = ("cfrp", "al", "ti")
# typical net torque (A) of each material at the speeds a program uses for it
TORQUE_RANGE_A: dict[str, tuple[float, float]] = {
    "cfrp": (0.8, 4.5),
    "al": (5.0, 12.0),
    "ti": (14.0, 50.0),
}
THRUST_PER_TORQUE: dict[str, float] = {"cfrp": 0.03, "al": 0.04, "ti": 0.05}
EXIT_STYLES = ("sharp", "trailing")
# stack types drawn by random_spec, with their weights (ordered soft to hard, as drilled)
STACK_TYPES: tuple[tuple[tuple[str, ...], float], ...] = (
    (("cfrp",), 0.10),
    (("al",), 0.05),
    (("ti",), 0.05),
    (("cfrp", "ti"), 0.35),
    (("cfrp", "al"), 0.15),
    (("al", "ti"), 0.10),
    (("cfrp", "al", "ti"), 0.20),
)


@dataclass(frozen=True)
class Layer:
    material: str  # cfrp | al | ti
    thickness_mm: float
    torque_a: float  # net torque level in this layer under the step active at its top


@dataclass(frozen=True)
class StackSpec:
    """One synthetic hole. Depths are tool positions in mm, positive into the work.

    The program steps are incremental travels from depth 0 (as in the Setitec Program
    table); `backoff_mm` has one entry per step change (0: the torque only dips).
    """

    layers: tuple[Layer, ...]
    air_gap_mm: float  # air travelled from the first sample to the top of the stack
    tool_diameter_mm: float
    point_angle_deg: float
    steps: tuple[ProgramStep, ...]
    backoff_mm: tuple[float, ...] = ()
    start_depth_mm: float = 1.0  # depth of the first sample (ignored when starts_inside)
    exit_style: str = "sharp"
    tail_mm: float = 2.5  # length of a trailing exit
    tail_share: float = 0.15  # share of the last level the trailing exit starts with
    aborted: bool = False
    abort_depth_mm: float | None = None  # where an aborted cycle stops (inside the last layer)
    starts_inside: bool = False
    inside_depth_mm: float = 1.0  # how far into the first layer's level the trace starts
    countersink: bool = False
    countersink_gap_mm: float = 3.0  # air after the exit before the countersink touches
    countersink_torque_a: float = 3.0
    local_counter: int = 0  # tool wear: torque rises with the head's local counter
    wear_per_hole: float = 0.001
    creep_per_mm: float = 0.0  # slow drift (mostly a rise) of torque in a layer, share per mm
    noise_a: float = 0.05
    air_offset_a: float = 0.0  # net torque in air: about 0, slightly negative on some heads
    reengage_mm: float = 0.15  # travel to re-engage after a step-change dip
    seed: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def point_length_mm(self) -> float:
        """Axial length of the drill point: its ramp length at each boundary."""
        return (self.tool_diameter_mm / 2.0) / math.tan(math.radians(self.point_angle_deg / 2.0))

    @property
    def top_mm(self) -> float:
        """Depth of the top of the stack."""
        if self.starts_inside:
            return self.first_depth_mm - self.point_length_mm - self.inside_depth_mm
        return self.start_depth_mm + self.air_gap_mm

    @property
    def first_depth_mm(self) -> float:
        return self.start_depth_mm

    @property
    def boundaries_mm(self) -> tuple[float, ...]:
        """Top of each layer, then the bottom of the last one."""
        out = [self.top_mm]
        for layer in self.layers:
            out.append(out[-1] + layer.thickness_mm)
        return tuple(out)

    @property
    def exit_length_mm(self) -> float:
        """Travel over which the torque falls at the exit (the point, or the trailing tail)."""
        if self.exit_style == "trailing":
            return max(self.point_length_mm, self.tail_mm)
        return self.point_length_mm

    @property
    def end_depth_mm(self) -> float:
        """Programmed end (sum of step travels), or where an aborted cycle stops."""
        if self.aborted and self.abort_depth_mm is not None:
            return self.abort_depth_mm
        return float(sum(s.travel_mm for s in self.steps))

    @property
    def stack_type(self) -> str:
        return "/".join(layer.material for layer in self.layers)


def _pick_stack(rng: np.random.Generator) -> tuple[str, ...]:
    weights = np.array([w for _, w in STACK_TYPES])
    k = int(rng.choice(len(STACK_TYPES), p=weights / weights.sum()))
    return STACK_TYPES[k][0]


def _levels(rng: np.random.Generator, materials: tuple[str, ...]) -> list[float]:
    """Layer torques with neighbours clearly apart (factor >= 3), as real stacks are:
    a ratio near the convention's factor 2 (after drift and feed changes) would make the
    truth itself a coin toss."""
    for _ in range(100):
        lv = [float(rng.uniform(*TORQUE_RANGE_A[m])) for m in materials]
        pairs = zip(lv, lv[1:], strict=False)
        if all(max(a, b) / min(a, b) >= 3.0 and abs(a - b) >= 0.6 for a, b in pairs):
            return lv
    # fall back to the range ends, which are far apart by construction
    return [TORQUE_RANGE_A[m][0] if i == 0 else TORQUE_RANGE_A[m][1]
            for i, m in enumerate(materials)]


def random_spec(rng: np.random.Generator) -> StackSpec:
    """A hole drawn from the field distribution (all cases, each with its share)."""
    seed = int(rng.integers(0, 2**31 - 1))
    materials = _pick_stack(rng)
    diameter = float(rng.uniform(4.0, 9.6))
    angle = float(rng.choice([118.0, 130.0, 135.0, 140.0]))
    point = (diameter / 2.0) / math.tan(math.radians(angle / 2.0))
    starts_inside = bool(rng.random() < 0.06)
    aborted = bool(rng.random() < 0.08)
    levels = _levels(rng, materials)

    # a layer shows at least ~0.6 mm of level; a first layer the trace starts inside, more
    thick = []
    for i, _ in enumerate(materials):
        lo = max(2.0, point + 0.6)
        if i == 0 and starts_inside:
            lo = max(lo, point + 2.6)
        if i == len(materials) - 1 and aborted:
            lo = max(lo, point + 1.8)
        hi = max(lo + 0.5, 30.0 if len(materials) == 1 else 16.0)
        thick.append(float(rng.uniform(lo, hi)))
    layers = tuple(Layer(m, t, lv) for m, t, lv in zip(materials, thick, levels, strict=True))

    start = float(rng.uniform(0.5, 3.0))
    air_gap = float(rng.uniform(1.0, 10.0))
    inside = float(rng.uniform(0.3, max(0.4, thick[0] - point - 2.0)))
    top = start - point - inside if starts_inside else start + air_gap
    bottoms = np.cumsum([top] + thick)
    exit_d = float(bottoms[-1])

    high_rpm = float(rng.uniform(1500, 4500))
    fpr = float(rng.uniform(0.03, 0.06))
    exit_style = "trailing" if (high_rpm >= 2500 and rng.random() < 0.35) else "sharp"
    tail = float(rng.uniform(2.0, 3.0))
    exit_len = max(point, tail) if exit_style == "trailing" else point

    countersink = bool(rng.random() < 0.4) and not aborted
    cs_gap = float(rng.uniform(1.5, 5.0))
    after = float(rng.uniform(2.5, 8.0)) + exit_len
    if countersink:
        after = max(after, exit_len + cs_gap + float(rng.uniform(1.0, 4.0)))
    end = exit_d + after

    # program: a fast step, a slow one shortly before the first metal layer, maybe a
    # fast one after the exit, maybe an extra change inside a layer (not on a ramp)
    changes: list[tuple[float, float, float]] = []  # (depth, rpm, feed/rev)
    metal = [i for i, m in enumerate(materials) if m != "cfrp"]
    rpm, cur_fpr = high_rpm, fpr
    if metal and rng.random() < 0.8:
        d = float(bottoms[metal[0]] - rng.uniform(0.2, 2.0))
        if d > start + 0.5 and (not starts_inside or d > start + 1.0):
            rpm = float(rng.uniform(300, 1000)) if materials[metal[0]] == "ti" else float(
                rng.uniform(800, 2500))
            cur_fpr = fpr * float(rng.uniform(0.75, 1.25))
            changes.append((d, rpm, cur_fpr))
    if rng.random() < 0.25:
        ramps = [(b - 1.2, b + point + 1.2) for b in bottoms]
        for _ in range(10):
            d = float(rng.uniform(start + 0.5, exit_d - 0.5))
            if all(not a <= d <= b for a, b in ramps) and all(abs(d - c[0]) > 1.5 for c in changes):
                cur_fpr = cur_fpr * float(rng.uniform(0.8, 1.25))
                changes.append((d, rpm, cur_fpr))
                break
    if not aborted and rng.random() < 0.4 and end - exit_d > exit_len + 1.5:
        d = float(exit_d + exit_len + rng.uniform(0.5, end - exit_d - exit_len - 0.5))
        if not countersink or d < exit_d + exit_len + cs_gap - 0.3:
            changes.append((d, high_rpm, fpr))
    changes.sort()

    steps: list[ProgramStep] = []
    prev_d, prev_rpm, prev_fpr = 0.0, high_rpm, fpr
    for n, (d, r, f) in enumerate(changes + [(end, 0.0, 0.0)], start=1):
        steps.append(ProgramStep(step=n, travel_mm=round(d - prev_d, 3), rpm=round(prev_rpm, 1),
                                 feed_mm_s=round(prev_rpm / 60.0 * prev_fpr, 3),
                                 feed_mm_rev=round(prev_fpr, 4)))
        prev_d, prev_rpm, prev_fpr = d, r, f
    backoff = tuple(float(rng.uniform(0.1, 1.4)) if rng.random() < 0.7 else 0.0
                    for _ in changes)

    abort_depth = None
    if aborted:
        last_top = float(bottoms[-2])
        ramp_end = last_top + point
        abort_depth = float(rng.uniform(ramp_end + 1.2, max(ramp_end + 1.3, exit_d - 0.3)))

    return StackSpec(
        layers=layers,
        air_gap_mm=air_gap,
        tool_diameter_mm=diameter,
        point_angle_deg=angle,
        steps=tuple(steps),
        backoff_mm=backoff,
        start_depth_mm=start,
        exit_style=exit_style,
        tail_mm=tail,
        tail_share=float(rng.uniform(0.1, 0.35)),
        aborted=aborted,
        abort_depth_mm=abort_depth,
        starts_inside=starts_inside,
        inside_depth_mm=inside,
        countersink=countersink,
        countersink_gap_mm=cs_gap,
        countersink_torque_a=float(rng.uniform(1.0, 8.0)),
        local_counter=int(rng.integers(0, 300)),
        wear_per_hole=float(rng.uniform(0.0005, 0.0015)),
        creep_per_mm=float(rng.uniform(-0.01, 0.025)),
        noise_a=float(rng.uniform(0.01, 0.1)),
        air_offset_a=float(rng.uniform(-0.15, 0.05)),
        reengage_mm=float(rng.uniform(0.05, 0.4)),
        seed=seed,
    )
