"""Training augmentation: each transform keeps the synthetic truth exact when applied to
the noiseless signal too, and really does what it says to the trace."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from appliance.points import POINT_NAMES, DepthPoints
from appliance.synth import SynthHole, random_spec, synthesize
from appliance.synth.truth import truth_points
from appliance.trace import Trace
from appliance.train.augment import (
    add_noise,
    augment,
    augment_holes,
    offset_limit,
    offset_step,
    scale_currents,
)
from appliance.train.data import TrainHole


def _holes(n: int, seed: int, want: str | None = None) -> list[SynthHole]:
    """n holes with an entry (and `want` among their phenomena, when given)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        spec = random_spec(rng)
        if spec.starts_inside or (want is not None and want not in spec.phenomena):
            continue
        out.append(synthesize(spec))
    return out


def _noiseless(h: SynthHole) -> Trace:
    """The hole's trace carrying its gain-1 noiseless torque: what the truth is read off."""
    return replace(h.trace, torque_a=h.noiseless_torque / h.spec.current_gain)


def _truth_of(h: SynthHole, t: Trace) -> DepthPoints:
    return truth_points(h.spec, t.depth_mm, t.torque_a, t.step)


def _assert_same_points(a: DepthPoints, b: DepthPoints, tol: float = 0.01) -> None:
    for name in POINT_NAMES:
        x, y = a.get(name), b.get(name)
        assert (x is None) == (y is None), (name, x, y)
        if x is not None:
            assert abs(x - y) <= tol, (name, x, y)


# ----------------------------------------------------------------- scale_currents

@pytest.mark.parametrize("gain", [0.6, 2.5])
def test_gain_scales_currents_and_keeps_the_crossings(gain: float) -> None:
    for h in _holes(12, 5):
        scaled = scale_currents(h.trace, gain, 0.9 * gain)
        assert np.allclose(scaled.torque_a, gain * h.trace.torque_a)
        assert np.allclose(scaled.thrust_a, 0.9 * gain * h.trace.thrust_a)
        assert np.array_equal(scaled.depth_mm, h.trace.depth_mm)
        assert scaled.meta.content_hash != h.trace.meta.content_hash
        assert len(scaled.meta.content_hash) == 64
        clean = scale_currents(_noiseless(h), gain)
        again = _truth_of(h, clean)
        if gain >= 1.0:
            _assert_same_points(again, h.truth)
        for name in POINT_NAMES:  # half-height crossings do not care about the scale
            if again.get(name) is not None and h.truth.get(name) is not None:
                assert again.get(name) == pytest.approx(h.truth.get(name), abs=0.01)


# ----------------------------------------------------------------- offset_step

def _offset_cases() -> list[SynthHole]:
    return _holes(25, 11) + _holes(8, 12, want="precontact") + _holes(5, 13, want="offset_step")


def test_offset_step_makes_negative_net_torque_before_a_new_step_change() -> None:
    done = 0
    for h in _offset_cases():
        limit = offset_limit(h.trace, h.truth.entry_mm)
        if limit is None or limit < h.trace.depth_mm[0] + 0.5:
            continue
        for depth in (limit, 0.5 * (limit + h.trace.depth_mm[0] + 0.5)):
            out = offset_step(h.trace, depth, -0.5, entry_mm=h.truth.entry_mm)
            c = int(np.flatnonzero(out.depth_mm >= depth)[0])
            assert out.step[c] == out.step[c - 1] + 1  # a program step change right there
            assert len(np.unique(out.step)) == len(np.unique(h.trace.step)) + 1
            assert np.all(out.stop_code[c - 2:c] == 64) and out.depth_mm[c - 3] == out.depth_mm[
                c - 1]
            base = _noiseless(h).torque_a
            clean = offset_step(_noiseless(h), depth, -0.5)
            assert np.all(clean.torque_a[:c] < -0.3)  # negative net torque in air before it
            assert np.allclose(clean.torque_a[:c - 2], base[:c - 2] - 0.5)
            assert np.allclose(clean.torque_a[c:], base[c - 2:])  # untouched after it
            # the program still describes the samples: the step running there is split
            prog = out.meta.program
            assert len(prog) == len(h.trace.meta.program) + 1
            assert sum(s.travel_mm for s in prog) == pytest.approx(
                sum(s.travel_mm for s in h.trace.meta.program), abs=2e-3)
            assert set(np.unique(out.step)) <= {s.step for s in prog}
            # the label stays exact: the truth read off the transformed noiseless signal
            _assert_same_points(_truth_of(h, clean), h.truth)
            assert out.meta.content_hash != h.trace.meta.content_hash
            done += 1
    assert done >= 40


def test_offset_step_refuses_a_depth_that_would_move_the_entry() -> None:
    h = _holes(1, 3)[0]
    with pytest.raises(ValueError):
        offset_step(h.trace, h.truth.entry_mm - 0.5, -0.4, entry_mm=h.truth.entry_mm)
    assert offset_limit(h.trace, None) is None


# ----------------------------------------------------------------- noise

def test_add_noise_has_the_asked_sigma_and_is_seeded() -> None:
    h = _holes(1, 4)[0]
    a = add_noise(h.trace, 0.2, np.random.default_rng(1))
    b = add_noise(h.trace, 0.2, np.random.default_rng(1))
    c = add_noise(h.trace, 0.2, np.random.default_rng(2))
    assert np.std(a.torque_a - h.trace.torque_a) == pytest.approx(0.2, rel=0.1)
    assert np.std(a.thrust_a - h.trace.thrust_a) == pytest.approx(0.02, rel=0.15)
    assert a.equals(b) and not a.equals(c)
    assert a.meta.content_hash == b.meta.content_hash != c.meta.content_hash


# ----------------------------------------------------------------- augment

def test_augment_strength_zero_is_the_identity_and_a_seed_repeats() -> None:
    h = _holes(1, 6)[0]
    assert augment(h.trace, h.truth, np.random.default_rng(0), strength=0.0) is h.trace
    a = augment(h.trace, h.truth, np.random.default_rng(9))
    b = augment(h.trace, h.truth, np.random.default_rng(9))
    assert a.equals(b) and a.meta.content_hash == b.meta.content_hash
    assert a.meta.content_hash != h.trace.meta.content_hash


def test_augment_draws_gains_and_offset_steps_in_range() -> None:
    holes = _holes(30, 8)
    rng = np.random.default_rng(3)
    ratios, offsets = [], 0
    for h in holes:
        out = augment(h.trace, h.truth, rng)
        steps_added = len(np.unique(out.step)) - len(np.unique(h.trace.step))
        offsets += steps_added
        if steps_added == 0:
            deep = h.trace.torque_a > 1.0
            ratios.append(float(np.median(out.torque_a[deep] / h.trace.torque_a[deep])))
    assert min(ratios) >= 0.28 and max(ratios) <= 3.2
    assert min(ratios) < 0.7 and max(ratios) > 1.5
    assert 2 <= offsets <= 20


def test_augment_holes_keeps_groups_counts_and_is_deterministic() -> None:
    holes = [TrainHole(h.trace, h.truth, f"g{i % 2}", f"hole-{i}")
             for i, h in enumerate(_holes(3, 10))]
    out = augment_holes(holes, copies=2, seed=5)
    assert len(out) == 9
    for i, orig in enumerate(holes):
        block = out[3 * i:3 * i + 3]
        assert block[0] is orig
        assert [x.hole_id for x in block[1:]] == [f"hole-{i}~aug1", f"hole-{i}~aug2"]
        assert all(x.group == orig.group and x.label == orig.label for x in block)
    assert len({x.trace.meta.content_hash for x in out}) == 9
    again = augment_holes(holes, copies=2, seed=5)
    other = augment_holes(holes, copies=2, seed=6)
    hashes = [x.trace.meta.content_hash for x in out]
    assert hashes == [x.trace.meta.content_hash for x in again]
    assert hashes[1] != other[1].trace.meta.content_hash
    assert augment_holes(holes, copies=0, seed=5) == holes
