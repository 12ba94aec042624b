"""Training augmentation that keeps a hole's depth-point labels valid (numpy only).

A label is a physical depth read off the torque's half-height crossings
(../shared/docs/depth-points.md), so the transforms here change what a different drill
or controller would log of the same hole, never where its ramps are:
- scale_currents: another drill model's current scale (crossings are scale-free);
- offset_step: a no-load offset that changes at a program step in air, well before the
  entry's air-level window (so the air level the entry is read from is untouched);
- add_noise: more sensor noise (the truth is the noiseless hole's).
Each returns a new Trace with its own content hash (hole ids are read off it).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

from appliance.estimators.reading import GRID_MM, LEVEL_WINDOW_MM, Profile, build_profile
from appliance.points import DepthPoints
from appliance.synth.signal import DWELL_ROWS, STOP_STEP_END
from appliance.trace import ProgramStep, Trace
from appliance.train.data import TrainHole

GAIN_RANGE = (0.3, 3.0)  # drills in the field log currents on scales this far apart
THRUST_GAIN_SPREAD = 0.2  # log-spread of the thrust gain around the torque gain
OFFSET_CLEAR_MM = 1.2  # an offset step sits this far before first contact: the entry's
# air level is the median over LEVEL_WINDOW_MM before its ramp (+ smoothing, + slack)
OFFSET_MIN_AIR_MM = 0.5  # and leaves this much air before it, to be seen at all
OFFSET_SPAN_MM = 6.0  # how far before that limit it may sit
P_OFFSET = 0.35
P_POSITIVE_OFFSET = 0.25  # some controllers net out too little: a positive offset
NOISE_MAX_A = 0.08
THRUST_NOISE_SHARE = 0.1  # thrust noise is about a tenth of torque noise on the logs
FOOT_SHARE = 0.1  # the entry ramp's foot is read where it is this far to half-height,
FOOT_MAX_SHARE = 0.5  # or further where noise hides that (beyond this: not read at all)
AIR_TOL_A = 0.05  # torque this far above the air level before contact is contact (a bump)
BUMP_MIN_SHARE = 0.1  # a pre-contact bump is at least this share of the first level ...
BUMP_MAX_MM = 1.0  # ... and starts at most this far before the ramp: where noise could
# hide one, the offset step keeps this much further away


def scale_currents(trace: Trace, torque_gain: float,
                   thrust_gain: float | None = None) -> Trace:
    """Currents x gain, as a drill model of another current scale logs the same cut. The
    no-load currents scale with them; power is the cut's and stays."""
    tg = float(torque_gain)
    fg = tg if thrust_gain is None else float(thrust_gain)
    return _derive(trace, f"gain:{tg:.6g}:{fg:.6g}",
                   torque_a=trace.torque_a * tg, thrust_a=trace.thrust_a * fg,
                   torque_empty_a=_times(trace.torque_empty_a, tg),
                   thrust_empty_a=_times(trace.thrust_empty_a, fg))


def add_noise(trace: Trace, sigma_a: float, rng: np.random.Generator,
              thrust_sigma_a: float | None = None) -> Trace:
    """Gaussian noise on torque and thrust (thrust: THRUST_NOISE_SHARE of it by default)."""
    fs = sigma_a * THRUST_NOISE_SHARE if thrust_sigma_a is None else thrust_sigma_a
    n = len(trace)
    torque = trace.torque_a + sigma_a * rng.standard_normal(n)
    thrust = trace.thrust_a + fs * rng.standard_normal(n)
    return _derive(trace, f"noise:{sigma_a:.6g}:{fs:.6g}:{torque[:4].tobytes().hex()}",
                   torque_a=torque, thrust_a=thrust)


def offset_limit(trace: Trace, entry_mm: float | None) -> float | None:
    """The deepest depth an offset step may sit at and leave the labelled entry exact:
    OFFSET_CLEAR_MM before first contact (a pre-contact bump included). None when the
    hole has no entry or its air before the entry cannot be read."""
    if entry_mm is None:
        return None
    prof = build_profile(trace.depth_mm, trace.torque_a, trace.step)
    if prof is None or prof.depth[-1] < entry_mm:
        return None
    contact = _first_contact(prof, entry_mm)
    return None if contact is None else contact - OFFSET_CLEAR_MM


def offset_step(trace: Trace, depth_mm: float, before_a: float,
                entry_mm: float | None = None) -> Trace:
    """A no-load offset that changes at a new program step change at depth_mm, in air: the
    samples before it get before_a more net torque (their no-load current before_a less),
    the later samples a new step number, and the step's end is logged as the controller
    does (its last sample repeated with a stop code). The program keeps up: the step
    running there is split (or the program dropped when it does not match the samples).
    With entry_mm (the labelled entry), refuses a depth past offset_limit."""
    if entry_mm is not None:
        limit = offset_limit(trace, entry_mm)
        if limit is None or depth_mm > limit:
            raise ValueError(f"an offset step at {depth_mm:.3f} mm would move the entry "
                             f"label (limit {limit})")
    deeper = np.flatnonzero(trace.depth_mm >= depth_mm)
    if len(deeper) == 0 or deeper[0] == 0:
        raise ValueError(f"no samples on both sides of {depth_mm:.3f} mm")
    c = int(deeper[0])
    torque = trace.torque_a.copy()
    torque[:c] += before_a
    empty = None if trace.torque_empty_a is None else trace.torque_empty_a.copy()
    if empty is not None:
        empty[:c] -= before_a  # the gross current is the same: the no-load estimate moved
    step = trace.step.copy()
    old = int(step[c])
    step[c:] += 1
    stop = trace.stop_code.copy()
    arrays = {"torque_a": torque, "step": step, "stop_code": stop, "torque_empty_a": empty}
    # the step's last sample is logged DWELL_ROWS times, its copies with the stop code
    repeat = np.ones(len(trace), dtype=np.int64)
    repeat[c - 1] = DWELL_ROWS
    values = {name: _value(trace, name, arrays) for name in _ARRAYS}
    out = {name: np.repeat(v, repeat) for name, v in values.items() if v is not None}
    out["stop_code"][c:c + DWELL_ROWS - 1] = STOP_STEP_END
    program = _split_program(trace.meta.program, old, depth_mm, trace.step)
    derived = _derive(trace, f"offset:{depth_mm:.6g}:{before_a:.6g}", **out)
    return replace(derived, meta=replace(derived.meta, program=program))


def augment(trace: Trace, label: DepthPoints, rng: np.random.Generator,
            strength: float = 1.0) -> Trace:
    """One random combination of the transforms, labels unchanged: a current gain
    (log-uniform GAIN_RANGE at strength 1, with a correlated thrust gain), sometimes an
    offset step before the entry (where the hole has room for one), and noise.
    strength 0 returns the trace as is; ranges shrink towards nothing below 1."""
    if strength <= 0.0:
        return trace
    log_gain = rng.uniform(strength * np.log(GAIN_RANGE[0]), strength * np.log(GAIN_RANGE[1]))
    thrust_log = log_gain + strength * rng.uniform(-THRUST_GAIN_SPREAD, THRUST_GAIN_SPREAD)
    out = scale_currents(trace, float(np.exp(log_gain)), float(np.exp(thrust_log)))
    if rng.random() < P_OFFSET:
        out = _maybe_offset(out, label, rng, strength)
    return add_noise(out, float(rng.uniform(0.0, NOISE_MAX_A * strength)), rng)


def augment_holes(holes: list[TrainHole], copies: int, seed: int,
                  strength: float = 1.0) -> list[TrainHole]:
    """The originals, each followed by `copies` augmented copies in its own group (so a
    fold never splits a hole from its copies); the same seed gives the same copies."""
    out: list[TrainHole] = []
    for i, hole in enumerate(holes):
        out.append(hole)
        for k in range(1, copies + 1):
            rng = np.random.default_rng([seed, i, k])
            trace = augment(hole.trace, hole.label, rng, strength)
            out.append(TrainHole(trace, hole.label, hole.group, f"{hole.hole_id}~aug{k}"))
    return out


# ---------------------------------------------------------------- helpers

_ARRAYS = ("depth_mm", "torque_a", "thrust_a", "step", "stop_code", "torque_empty_a",
           "thrust_empty_a", "power_w", "rpm")


def _value(trace: Trace, name: str, changed: dict[str, np.ndarray | None]) -> np.ndarray | None:
    return changed[name] if name in changed else getattr(trace, name)


def _times(values: np.ndarray | None, gain: float) -> np.ndarray | None:
    return None if values is None else values * gain


def _derive(trace: Trace, tag: str, **arrays: np.ndarray | None) -> Trace:
    """A new trace with some arrays replaced and a content hash of its own: the store's
    hole id is the hash's prefix, so a suffix would collide with the original's."""
    digest = hashlib.sha256(f"{trace.meta.content_hash}|{tag}".encode()).hexdigest()
    meta = replace(trace.meta, content_hash=digest,
                   extra={**trace.meta.extra, "augmented": tag.split(":")[0]})
    # the names vary by augmentation, so mypy holds every field to ndarray | None; a None
    # only ever comes from the trace's own optional arrays (via _value/_times), never for a
    # required one
    return replace(trace, meta=meta, **arrays)  # type: ignore[arg-type]


def _maybe_offset(trace: Trace, label: DepthPoints, rng: np.random.Generator,
                  strength: float) -> Trace:
    limit = offset_limit(trace, label.entry_mm)
    if limit is None:
        return trace
    lo = max(float(trace.depth_mm[0]) + OFFSET_MIN_AIR_MM, limit - OFFSET_SPAN_MM)
    if limit <= lo:
        return trace
    depth = float(rng.uniform(lo, limit))
    if rng.random() < P_POSITIVE_OFFSET:
        before = float(rng.uniform(0.2, 0.5))
    else:
        before = float(rng.uniform(-0.6, -0.1))
    return offset_step(trace, depth, strength * before)


def _first_contact(prof: Profile, entry_mm: float) -> float | None:
    """A shallow bound on where the tool first touched before the labelled entry: the
    foot of the entry ramp, extrapolated from where the ramp is a share q of the way to
    half-height (the foot itself drowns in noise), then back over any bump above air."""
    i = prof.index(entry_mm)
    win = int(round(LEVEL_WINDOW_MM / GRID_MM))
    head = prof.smooth[:min(i, win) + 1]
    air = float(np.median(head))
    rise = float(prof.smooth[i]) - air
    tol = max(AIR_TOL_A, 3.0 * 1.4826 * float(np.median(np.abs(head - air))))
    q = max(FOOT_SHARE, 2.0 * tol / rise) if rise > 0.0 else 1.0
    if q > FOOT_MAX_SHARE:
        return None
    low = np.flatnonzero(prof.smooth[:i + 1] <= air + q * rise)
    if len(low) == 0:
        return None
    # a drill point's quadratic ramp is q of the way up at sqrt(q) of its half-height
    # travel: the longest way back of any ramp shape this convex or less
    back = (entry_mm - float(prof.depth[low[-1]])) / (1.0 - np.sqrt(q))
    j = prof.index(entry_mm - back)
    in_air = np.flatnonzero(prof.smooth[:j + 1] <= air + tol)
    if len(in_air) == 0:
        return None
    contact = float(prof.depth[in_air[-1]])
    if tol > BUMP_MIN_SHARE * 2.0 * rise:
        contact -= BUMP_MAX_MM  # a bump could hide under the noise
    return contact


def _split_program(program: tuple[ProgramStep, ...], old: int, depth_mm: float,
                   step: np.ndarray) -> tuple[ProgramStep, ...]:
    """The program with step `old` split at depth_mm and later steps renumbered; () when
    the program does not describe the samples (features then fall back to rpm)."""
    numbers = [int(s.step) for s in program]
    if not program or old not in numbers or not set(np.unique(step).tolist()) <= set(numbers):
        return ()
    k = numbers.index(old)
    begin = float(sum(s.travel_mm for s in program[:k]))
    st = program[k]
    if not begin < depth_mm < begin + st.travel_mm:
        return ()
    first = replace(st, travel_mm=round(depth_mm - begin, 3))
    second = replace(st, step=st.step + 1, travel_mm=round(st.travel_mm - first.travel_mm, 3))
    later = [replace(s, step=s.step + 1) if s.step > old else s for s in program[k + 1:]]
    return (*program[:k], first, second, *later)
