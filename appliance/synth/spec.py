"""StackSpec: everything that decides one synthetic hole, and random_spec to draw one.

The ranges follow the real Setitec logs in ../shared/data/setitec: CFRP a few A, aluminium
in between, titanium tens of A at low RPM; programs switch to a slow step just before a
metal layer, steps roughly keep feed per revolution, and the tool backs off 0.1-1.4 mm at
a step change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from appliance.estimators.reading import LEVEL_WINDOW_MM, MIN_LEVEL_MM, SMOOTH_MM
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
# stack types drawn by random_spec, with their weights, in drilling order: mostly soft over
# hard; hard over soft (the transition ramp goes down) is rarer in the field
STACK_TYPES: tuple[tuple[tuple[str, ...], float], ...] = (
    (("cfrp",), 0.10),
    (("al",), 0.05),
    (("ti",), 0.05),
    (("cfrp", "ti"), 0.35),
    (("cfrp", "al"), 0.15),
    (("al", "ti"), 0.10),
    (("cfrp", "al", "ti"), 0.20),
    (("ti", "cfrp"), 0.03),
    (("al", "cfrp"), 0.03),
    (("ti", "al"), 0.02),
)

# field phenomena random_spec draws, each independently for about this share of holes
# (where the hole allows it: no pre-contact on a trace that starts inside, ...)
P_PRECONTACT = 0.08
P_LAYER_DIP = 0.10
P_TWO_STAGE_EXIT = 0.11
P_THIN_FIRST = 0.10
P_OFFSET_STEP = 0.10
P_CURRENT_GAIN = 0.15
P_AIR_FRAGMENT = 0.03
FRAGMENT_MIN_MM = 0.5  # a fragment holds at least this much travel ...
FRAGMENT_CLEAR_MM = 0.3  # ... and stops this far before anything touches
PRECONTACT_RAMP_MM = 0.1  # the point's tip touching: a short rise
PRECONTACT_MAX_A = 0.45  # a bump is smaller than this ...
PRECONTACT_SHARE = 0.3  # ... and than this share of the first layer's level
# the least level the convention reads as one, plus the smoothing that widens both ramps
# beside it: a first layer less than this longer than the point shows no level
THIN_LEVEL_MM = MIN_LEVEL_MM + SMOOTH_MM
DIP_CLEAR_MM = 1.5  # a dip stays this far from a ramp's level window and a step change
OFFSET_CLEAR_MM = 1.2  # an offset step sits at least this far before the stack top ...
OFFSET_AIR_MM = 0.5  # ... and leaves this much air level before the entry (or a bump)


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
    # field phenomena; each default means "absent", so older specs keep their meaning
    precontact_mm: float = 0.0  # the point touches this far before the stack top ...
    precontact_a: float = 0.0  # ... and the torque holds this much until the entry ramp
    dip_mm: float | None = None  # where a dip inside a layer starts (chip clogging, a void)
    dip_length_mm: float = 0.5
    dip_share: float = 0.0  # share of the torque lost at the dip's deepest
    exit_shelf_share: float = 0.0  # two-stage exit: the shelf's share of the last level
    exit_shelf_mm: float = 0.3  # the shelf's length
    offset_step_mm: float | None = None  # a step change in air where the no-load offset ...
    offset_before_a: float = 0.0  # ... changes: net torque offset of the samples before it
    current_gain: float = 1.0  # the drill's current scale (torque and thrust)
    # the log stops here, in air before the point touches (a transfer cut short, as the
    # 56-row MQTT fragments of the field): no point exists in what is left
    fragment_end_mm: float | None = None
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
        """Travel over which the torque falls at the exit (the point, the trailing tail, or
        both stages of a two-stage exit with the shelf between)."""
        if self.exit_style == "trailing":
            return max(self.point_length_mm, self.tail_mm)
        if self.two_stage_exit:
            return self.point_length_mm + self.exit_shelf_mm + self.exit_second_mm
        return self.point_length_mm

    @property
    def two_stage_exit(self) -> bool:
        return self.exit_shelf_share > 0.0 and self.exit_style == "sharp"

    @property
    def exit_second_mm(self) -> float:
        """Length of a two-stage exit's second fall: what is left (a cap, a burr) is thin."""
        return max(0.15, self.exit_shelf_share * self.point_length_mm)

    @property
    def precontact_start_mm(self) -> float | None:
        """Where a pre-contact bump starts rising, or None."""
        if self.precontact_a <= 0.0 or self.starts_inside:
            return None
        return self.top_mm - self.precontact_mm

    @property
    def phenomena(self) -> tuple[str, ...]:
        """The field phenomena of this hole, by name (see TraceMeta.extra["phenomena"])."""
        out = []
        if self.precontact_start_mm is not None:
            out.append("precontact")
        if self.dip_mm is not None and self.dip_share > 0.0:
            out.append("layer_dip")
        if self.two_stage_exit and not self.aborted:
            out.append("two_stage_exit")
        levels = [layer.torque_a for layer in self.layers]
        if any(b < a for a, b in zip(levels, levels[1:], strict=False)):
            out.append("hard_over_soft")
        if (len(self.layers) > 1 and not self.starts_inside
                and self.layers[0].thickness_mm < self.point_length_mm + THIN_LEVEL_MM):
            out.append("thin_first_layer")
        if self.offset_step_mm is not None and self.offset_before_a != 0.0:
            out.append("offset_step")
        if self.current_gain != 1.0:
            out.append("current_gain")
        if self.fragment_end_mm is not None:
            out.append("air_fragment")
        return tuple(out)

    @property
    def end_depth_mm(self) -> float:
        """Programmed end (sum of step travels), or where an aborted cycle stops."""
        if self.aborted and self.abort_depth_mm is not None:
            return self.abort_depth_mm
        return float(sum(s.travel_mm for s in self.steps))

    @property
    def stack_type(self) -> str:
        return "/".join(layer.material for layer in self.layers)


def with_offset_step(spec: StackSpec, depth_mm: float, before_a: float,
                     backoff_mm: float = 0.0) -> StackSpec:
    """`spec` with a no-load offset that changes at a program step change at depth_mm: the
    step running there is split in two (same speed and feed) unless one ends there."""
    ends = np.cumsum([s.travel_mm for s in spec.steps])
    if float(np.min(np.abs(ends - depth_mm))) <= 0.01:
        return replace(spec, offset_step_mm=depth_mm, offset_before_a=before_a)
    k = min(int(np.searchsorted(ends, depth_mm)), len(spec.steps) - 1)
    st = spec.steps[k]
    begin = float(ends[k]) - st.travel_mm
    first = replace(st, travel_mm=round(depth_mm - begin, 3))
    second = replace(st, travel_mm=round(st.travel_mm - first.travel_mm, 3))
    steps = [*spec.steps[:k], first, second, *spec.steps[k + 1:]]
    backoff = list(spec.backoff_mm) + [0.0] * max(0, k - len(spec.backoff_mm))
    backoff.insert(k, backoff_mm)
    return replace(spec, steps=tuple(replace(s, step=n) for n, s in enumerate(steps, start=1)),
                   backoff_mm=tuple(backoff), offset_step_mm=begin + first.travel_mm,
                   offset_before_a=before_a)


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
    # a first layer barely longer than the point shows no level (the convention then takes
    # its peak); only over a harder layer, so that the transition stays well-defined
    thin_first = (bool(rng.random() < P_THIN_FIRST) and len(materials) > 1
                  and not starts_inside and levels[1] > levels[0])
    if thin_first:
        thick[0] = point + float(rng.uniform(0.25, THIN_LEVEL_MM - 0.02))
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
    two_stage = (bool(rng.random() < P_TWO_STAGE_EXIT) and exit_style == "sharp"
                 and not aborted)
    shelf_share = float(rng.uniform(0.3, 0.45)) if two_stage else 0.0
    shelf_mm = float(rng.uniform(0.1, 0.5))
    if two_stage:
        exit_len = point + shelf_mm + max(0.15, shelf_share * point)

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
        # over a thin first layer the program slows before the stack: the metal is there
        anchor = top if thin_first else bottoms[metal[0]]
        d = float(anchor - rng.uniform(0.2, 2.0))
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
    precontact_mm, precontact_a = _draw_precontact(rng, air_gap, levels[0], starts_inside)
    offset_d = None
    if not starts_inside:
        offset_d = _draw_offset_step(rng, changes, start, top, precontact_mm,
                                     (high_rpm, fpr))
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
    cut_end = abort_depth if abort_depth is not None else exit_d
    layer_spans = [(float(a), float(b)) for a, b in zip(bottoms[:-1], bottoms[1:], strict=True)]
    layer_spans[-1] = (layer_spans[-1][0], cut_end)
    dip_mm, dip_len, dip_share = _draw_dip(rng, layer_spans, point, start,
                                           [c[0] for c in changes], not aborted)
    gain = (float(np.exp(rng.uniform(np.log(0.3), np.log(3.0))))
            if rng.random() < P_CURRENT_GAIN else 1.0)

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
        precontact_mm=precontact_mm,
        precontact_a=precontact_a,
        dip_mm=dip_mm,
        dip_length_mm=dip_len,
        dip_share=dip_share,
        exit_shelf_share=shelf_share,
        exit_shelf_mm=shelf_mm,
        offset_step_mm=offset_d,
        offset_before_a=float(rng.uniform(-0.6, -0.15)) if offset_d is not None else 0.0,
        current_gain=gain,
        fragment_end_mm=_draw_fragment(seed, start, top, precontact_mm, starts_inside),
        seed=seed,
    )


def _draw_fragment(seed: int, start: float, top: float, precontact_mm: float,
                   starts_inside: bool) -> float | None:
    """Where an air-only fragment stops, or None. Drawn from its own stream of the hole's
    seed, so the holes of a seed stay what they were before fragments were drawn."""
    rng = np.random.default_rng([seed, 0xF4A6])
    if starts_inside or not rng.random() < P_AIR_FRAGMENT:
        return None
    hi = top - precontact_mm - PRECONTACT_RAMP_MM - FRAGMENT_CLEAR_MM
    lo = start + FRAGMENT_MIN_MM
    return float(rng.uniform(lo, hi)) if hi > lo else None


def _draw_precontact(rng: np.random.Generator, air_gap: float, level0: float,
                     starts_inside: bool) -> tuple[float, float]:
    """(mm before the top, A) of a pre-contact bump, or (0, 0). It leaves at least
    OFFSET_AIR_MM + 0.1 mm of air before it: the entry's air level is read there."""
    if not rng.random() < P_PRECONTACT or starts_inside:
        return 0.0, 0.0
    mm = min(float(rng.uniform(0.2, 1.0)), air_gap - OFFSET_AIR_MM - PRECONTACT_RAMP_MM)
    if mm < 0.2:
        return 0.0, 0.0
    amp = min(PRECONTACT_MAX_A, PRECONTACT_SHARE * level0) * float(rng.uniform(0.4, 0.95))
    return mm, amp


def _draw_offset_step(rng: np.random.Generator, changes: list[tuple[float, float, float]],
                      start: float, top: float, precontact_mm: float,
                      first: tuple[float, float]) -> float | None:
    """Depth of a step change in air where the no-load offset changes, or None. Uses a
    step change the program already has there, else adds one that keeps speed and feed
    (`first`: the first step's rpm and feed/rev). It leaves air level both before it and
    between it and the entry (or a pre-contact bump): both levels must be readable."""
    if not rng.random() < P_OFFSET_STEP:
        return None
    hi = top - max(OFFSET_CLEAR_MM, precontact_mm + PRECONTACT_RAMP_MM + OFFSET_AIR_MM)
    lo = max(start + OFFSET_AIR_MM, top - 6.0)
    if hi <= lo:
        return None
    there = [c[0] for c in changes if lo <= c[0] <= hi]
    if there:
        return min(there)
    d = float(rng.uniform(lo, hi))
    before = [c for c in sorted(changes) if c[0] < d]
    rpm, fpr = (before[-1][1], before[-1][2]) if before else first
    changes.append((d, rpm, fpr))
    return d


def _draw_dip(rng: np.random.Generator, spans: list[tuple[float, float]], point: float,
              start: float, change_depths: list[float], exits: bool,
              ) -> tuple[float | None, float, float]:
    """(start depth, length, share) of a torque dip inside a layer, or (None, 0.5, 0).
    It keeps DIP_CLEAR_MM clear of every ramp's level window and of every step change
    (whose level window and bridged dip the convention reads): the truth must not see it."""
    if not rng.random() < P_LAYER_DIP:
        return None, 0.5, 0.0
    length = float(rng.uniform(0.2, 1.0))
    share = float(rng.uniform(0.2, 0.6))
    clear = LEVEL_WINDOW_MM + SMOOTH_MM / 2 + DIP_CLEAR_MM  # window, smoothing, clearance
    room = []
    for i, (top, bottom) in enumerate(spans):
        lo = max(top + point + clear, start + clear)
        last = i == len(spans) - 1
        hi = bottom - (clear if exits or not last else DIP_CLEAR_MM) - length
        if hi > lo:
            room.append((lo, hi))
    far = LEVEL_WINDOW_MM + 0.2 + DIP_CLEAR_MM  # also past a step change's bridged dip
    for _ in range(10):
        if not room:
            break
        lo, hi = room[int(rng.integers(len(room)))]
        d = float(rng.uniform(lo, hi))
        if all(c < d - far or c > d + length + far for c in change_depths):
            return d, length, share
    return None, 0.5, 0.0
