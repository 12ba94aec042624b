"""The synthetic generator: truth, cases, determinism, the `appliance synth` command."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from appliance.cli import main
from appliance.points import DepthPoints
from appliance.synth import Layer, StackSpec, generate, random_spec, synthesize
from appliance.synth.spec import STACK_TYPES, with_offset_step
from appliance.synth.truth import truth_points
from appliance.trace import ProgramStep

TORQUE_Q = 50.0 / 1024.0


# ----------------------------------------------------------------- independent truth

def _independent_truth(hole) -> dict[str, float | None]:
    """The convention read off the noiseless torque, written here from the doc, plainly
    (loops, no shared code): advancing samples, step-change dips bridged, 0.01 mm grid,
    0.2 mm moving mean, levels = medians over 1 mm beside the placed ramps, half-height."""
    spec, tr = hole.spec, hole.trace
    # the truth is the physical hole's: read at gain 1, whatever drill logged it
    d_all, t_all, s_all = tr.depth_mm, hole.noiseless_torque / spec.current_gain, tr.step
    keep_d, keep_t, keep_s = [], [], []
    best = -np.inf
    for d, t, s in zip(d_all, t_all, s_all, strict=True):
        if d > best:
            keep_d.append(d)
            keep_t.append(t)
            keep_s.append(s)
            best = d
    d = np.array(keep_d)
    t = np.array(keep_t)
    s = np.array(keep_s)
    drop = np.zeros(len(d), dtype=bool)
    for c in range(1, len(d)):
        if s[c] == s[c - 1]:
            continue
        window = t[(d >= d[c - 1] - 1.0) & (np.arange(len(d)) < c)]
        level = float(np.median(window))
        if level < 0.2:
            continue
        j = c
        while j < len(d) and d[j] <= d[c - 1] + 1.2 and t[j] < 0.5 * level:
            j += 1
        if j < len(d) and d[j] <= d[c - 1] + 1.2:
            drop[c:j] = True
    grid = np.arange(d[0], d[-1] + 1e-9, 0.01)
    tg = np.interp(grid, d[~drop], t[~drop])
    kernel = np.ones(21) / 21.0
    sm = np.convolve(tg, kernel, mode="same")
    # the ends of np.convolve see zeros: use the shrinking window there
    for i in list(range(10)) + list(range(len(tg) - 10, len(tg))):
        lo, hi = max(0, i - 10), min(len(tg), i + 11)
        sm[i] = tg[lo:hi].mean()

    def idx(x: float) -> int:
        return int(np.clip(round((x - grid[0]) / 0.01), 0, len(grid) - 1))

    def cross(i0: int, i1: int, lb: float, la: float) -> float | None:
        half = (lb + la) / 2
        for i in range(i0, i1):
            a, b = sm[i], sm[i + 1]
            if (la > lb and a < half <= b) or (la < lb and a > half >= b):
                return grid[i] + (half - a) / (b - a) * 0.01
        return None

    p = spec.point_length_mm
    bounds = spec.boundaries_mm
    ramps = []
    if not spec.starts_inside:
        ramps.append(("entry", bounds[0] - 0.1, bounds[0] + p + 0.1))
    for b in bounds[1:-1]:
        ramps.append(("change", b - 0.1, b + p + 0.1))
    if not spec.aborted:
        end = bounds[-1] + spec.exit_length_mm + 0.1
        if spec.exit_style == "trailing":
            # the convention's ramp ends where the slope is back under 20 % of its peak
            i0, i1 = idx(bounds[-1] - 0.1), idx(end)
            slope = np.gradient(sm, 0.01)
            slope = np.convolve(slope, kernel, mode="same")
            seg = -slope[i0:i1 + 1]
            k = int(np.argmax(seg))
            low = seg < 0.2 * seg[k]
            run = 0
            stop = len(seg) - 1
            for m in range(k, len(seg)):
                run = run + 1 if low[m] else 0
                if run >= 10:
                    stop = m - 10
                    break
            end = grid[i0 + stop]
        ramps.append(("exit", bounds[-1] - 0.1, end))
    ramps = [r for r in ramps if r[1] >= grid[0] and r[2] <= grid[-1]]
    out: dict[str, float | None] = {"entry": None, "transition": None, "exit": None}
    limit = grid[-1]
    if spec.countersink:
        limit = bounds[-1] + spec.exit_length_mm + spec.countersink_gap_mm
    for j, (kind, a, b) in enumerate(ramps):
        prev_end = ramps[j - 1][2] if j else grid[0]
        next_start = ramps[j + 1][1] if j + 1 < len(ramps) else limit
        if kind == "entry":
            # the air level: before a pre-contact bump, after a no-load offset step
            if spec.precontact_a > 0:
                a = spec.top_mm - spec.precontact_mm - 0.1
            if spec.offset_step_mm is not None:
                prev_end = max(prev_end, spec.offset_step_mm)
        lb = float(np.median(tg[idx(max(a - 1.0, prev_end)):idx(a) + 1]))
        a = ramps[j][1]
        la = float(np.median(tg[idx(b):idx(min(b + 1.0, next_start)) + 1]))
        if kind == "entry":
            out["entry"] = cross(idx(a), idx(b), lb, la)
        elif kind == "change" and out["transition"] is None:
            lo, hi = sorted((abs(lb), abs(la)))
            if hi - lo >= 0.4 and hi >= 2 * lo:
                out["transition"] = cross(idx(a), idx(b), lb, la)
        elif kind == "exit":
            out["exit"] = cross(idx(a), idx(b), lb, la)
    return out


def test_truth_matches_an_independent_reading_of_the_noiseless_torque() -> None:
    holes = generate(40, seed=101)
    checked = 0
    for h in holes:
        mine = _independent_truth(h)
        for name, value in mine.items():
            truth = h.truth.get(name)
            assert (truth is None) == (value is None), (h.spec.seed, name, truth, value)
            if truth is not None:
                assert abs(truth - value) < 0.02, (h.spec.seed, name, truth, value)
                checked += 1
    assert checked > 80


def test_truth_sits_on_the_drill_point_ramps() -> None:
    for h in generate(60, seed=7):
        b = h.spec.boundaries_mm
        p = h.spec.point_length_mm
        if h.truth.entry_mm is not None:
            assert b[0] <= h.truth.entry_mm <= b[0] + p
        if h.truth.exit_mm is not None:
            assert b[-1] <= h.truth.exit_mm <= b[-1] + h.spec.exit_length_mm
        if h.truth.transition_mm is not None:
            assert any(x <= h.truth.transition_mm <= x + p for x in b[1:-1])
        assert h.truth.order_problem() is None


# ----------------------------------------------------------------- cases via StackSpec

def _spec(**kw) -> StackSpec:
    base = StackSpec(
        layers=(Layer("cfrp", 8.0, 3.0), Layer("ti", 6.0, 25.0)),
        air_gap_mm=4.0, tool_diameter_mm=6.35, point_angle_deg=118.0,
        steps=(ProgramStep(1, 12.0, 4000.0, 3.0, 0.045),
               ProgramStep(2, 12.0, 1000.0, 0.75, 0.045)),
        backoff_mm=(0.5,), start_depth_mm=1.0, noise_a=0.03, seed=5,
    )
    return replace(base, **kw)


def test_default_case_has_all_three_points_and_realistic_levels() -> None:
    h = synthesize(_spec())
    assert h.truth.entry_mm is not None and h.truth.transition_mm is not None
    assert h.truth.exit_mm is not None
    t = h.trace
    in_ti = (t.depth_mm > 14.0) & (t.depth_mm < 17.5)
    in_cfrp = (t.depth_mm > 8.0) & (t.depth_mm < 10.0)
    assert 20.0 < np.median(t.torque_a[in_ti]) < 32.0
    assert 2.0 < np.median(t.torque_a[in_cfrp]) < 4.0
    # quantised like the controller logs it
    assert np.allclose(t.torque_a / TORQUE_Q, np.round(t.torque_a / TORQUE_Q), atol=0.03)
    # thrust follows torque
    assert np.corrcoef(t.torque_a, t.thrust_a)[0, 1] > 0.8
    assert t.meta.variant == "synthetic" and t.meta.extra["stack"] == "cfrp/ti"
    assert len(t.meta.content_hash) == 64


def test_single_layer_has_no_transition() -> None:
    h = synthesize(_spec(layers=(Layer("cfrp", 10.0, 3.0),)))
    assert h.truth.transition_mm is None
    assert h.truth.entry_mm is not None and h.truth.exit_mm is not None
    assert h.trace.meta.extra["stack"] == "cfrp"


def test_aborted_cycle_has_no_exit_and_stops_inside() -> None:
    h = synthesize(_spec(aborted=True, abort_depth_mm=17.0))
    assert h.truth.exit_mm is None and h.truth.transition_mm is not None
    assert h.trace.depth_mm.max() == pytest.approx(17.0, abs=0.01)
    assert h.trace.stop_code[-1] == 131074
    assert h.trace.torque_a[-1] > 15.0  # still cutting titanium


def test_trace_starting_inside_has_no_entry() -> None:
    h = synthesize(_spec(starts_inside=True, inside_depth_mm=1.5))
    assert h.truth.entry_mm is None and h.truth.transition_mm is not None
    first = h.trace.torque_a[:20]
    assert np.median(first) > 2.0


def test_three_layers_transition_is_the_first_change() -> None:
    spec = _spec(layers=(Layer("cfrp", 6.0, 2.0), Layer("al", 5.0, 8.0), Layer("ti", 5.0, 30.0)),
                 steps=(ProgramStep(1, 30.0, 3000.0, 2.0, 0.04),), backoff_mm=())
    h = synthesize(spec)
    b = spec.boundaries_mm
    assert b[1] <= h.truth.transition_mm <= b[1] + spec.point_length_mm
    assert h.trace.meta.extra["stack"] == "cfrp/al/ti"


def test_point_ramp_length_follows_diameter_and_angle() -> None:
    narrow = _spec(tool_diameter_mm=4.0, point_angle_deg=140.0)
    wide = _spec(tool_diameter_mm=9.5, point_angle_deg=118.0)
    assert narrow.point_length_mm == pytest.approx(2.0 / np.tan(np.radians(70.0)))
    assert wide.point_length_mm > 2 * narrow.point_length_mm

    def rise_length(h) -> float:
        d, t = h.trace.depth_mm, h.noiseless_torque
        lvl = 3.0 * (1 + h.spec.wear_per_hole * h.spec.local_counter)
        first = d[t > 0.05 * lvl][0]
        full = d[t > 0.95 * lvl][0]
        return full - first

    assert rise_length(synthesize(wide)) > 2 * rise_length(synthesize(narrow))


def test_step_change_backs_off_dips_and_changes_feed() -> None:
    h = synthesize(_spec())
    t = h.trace
    k = int(np.flatnonzero(np.diff(t.step) != 0)[0]) + 1
    assert t.depth_mm[k - 1] - t.depth_mm[k] == pytest.approx(0.5, abs=0.01)  # back-off
    assert abs(t.torque_a[k]) < 0.3  # re-travelling in the hole already cut
    before = np.diff(t.depth_mm[k - 30:k - 5]).mean()
    after = np.diff(t.depth_mm[k + 5:k + 30]).mean()
    assert before == pytest.approx(0.03, abs=0.003)  # 3 mm/s at 100 Hz
    assert after == pytest.approx(0.0075, abs=0.002)  # 0.75 mm/s
    no_back = synthesize(_spec(backoff_mm=(0.0,)))
    t2 = no_back.trace
    k2 = int(np.flatnonzero(np.diff(t2.step) != 0)[0]) + 1
    assert np.all(np.abs(t2.torque_a[k2:k2 + 3]) < 0.3)  # the dip without a back-off


def test_trailing_exit_decays_over_millimetres_and_sharp_does_not() -> None:
    sharp = synthesize(_spec(steps=(ProgramStep(1, 30.0, 4000.0, 3.0, 0.045),),
                             backoff_mm=()))
    trailing = synthesize(replace(sharp.spec, exit_style="trailing", tail_mm=2.8,
                                  tail_share=0.2))
    bottom = sharp.spec.boundaries_mm[-1]
    p = sharp.spec.point_length_mm

    def after_point(h) -> float:
        d = h.trace.depth_mm
        m = (d > bottom + p + 0.2) & (d < bottom + p + 0.6)
        return float(np.median(h.noiseless_torque[m]))

    assert after_point(sharp) < 0.05
    assert after_point(trailing) > 0.5
    assert trailing.truth.exit_mm > bottom


def test_countersink_rises_after_the_exit_and_is_not_the_exit() -> None:
    spec = _spec(steps=(ProgramStep(1, 30.0, 4000.0, 3.0, 0.045),), backoff_mm=(),
                 countersink=True, countersink_gap_mm=2.0, countersink_torque_a=5.0)
    h = synthesize(spec)
    bottom = spec.boundaries_mm[-1]
    assert bottom < h.truth.exit_mm < bottom + spec.point_length_mm
    late = h.trace.depth_mm > bottom + spec.point_length_mm + 2.0 + 1.6
    assert np.median(h.trace.torque_a[late]) > 3.0


def test_wear_raises_torque_with_the_local_counter() -> None:
    new = synthesize(_spec(local_counter=0, wear_per_hole=0.002))
    worn = synthesize(_spec(local_counter=200, wear_per_hole=0.002))
    m = (new.trace.depth_mm > 8.0) & (new.trace.depth_mm < 10.0)
    ratio = np.median(worn.noiseless_torque[m]) / np.median(new.noiseless_torque[m])
    assert ratio == pytest.approx(1.4, rel=0.02)
    assert worn.trace.meta.head_local_counter == 200


def test_noise_level_is_what_the_spec_asks() -> None:
    quiet = synthesize(_spec(noise_a=0.01))
    loud = synthesize(_spec(noise_a=0.2))
    air = quiet.trace.depth_mm < quiet.spec.top_mm - 0.5  # same path: same samples
    r1 = (quiet.trace.torque_a - quiet.noiseless_torque)[air]
    r2 = (loud.trace.torque_a - loud.noiseless_torque)[air]
    assert np.std(r2) == pytest.approx(0.2, rel=0.2)
    assert np.std(r1) < 0.05  # mostly the quantum


# ----------------------------------------------------------------- distribution

def test_random_specs_cover_the_field_distribution() -> None:
    holes = generate(400, seed=3)
    specs = [h.spec for h in holes]
    assert {s.stack_type for s in specs} == {"/".join(t) for t, _ in STACK_TYPES}
    assert any(s.aborted for s in specs) and any(s.starts_inside for s in specs)
    assert any(s.countersink for s in specs)
    assert {s.exit_style for s in specs} == {"sharp", "trailing"}
    backs = [b for s in specs for b in s.backoff_mm if b > 0]
    assert backs and min(backs) >= 0.1 and max(backs) <= 1.4
    # a first layer too thin to level is a case of its own (see the phenomena below)
    thick = [layer.thickness_mm for s in specs for i, layer in enumerate(s.layers)
             if i > 0 or "thin_first_layer" not in s.phenomena]
    assert min(thick) < 3.0 and max(thick) > 20.0 and min(thick) >= 2.0
    gaps = [s.air_gap_mm for s in specs if not s.starts_inside]
    assert 1.0 <= min(gaps) and max(gaps) <= 10.0
    levels = {m: [la.torque_a for s in specs for la in s.layers if la.material == m]
              for m in ("cfrp", "al", "ti")}
    assert max(levels["cfrp"]) < min(levels["ti"])
    assert np.median(levels["cfrp"]) < np.median(levels["al"]) < np.median(levels["ti"])
    # absent points where the case says so
    for h in holes:
        if h.spec.fragment_end_mm is not None:
            assert h.truth == DepthPoints(None, None, None)
            continue
        assert (h.truth.entry_mm is None) == h.spec.starts_inside
        assert (h.truth.exit_mm is None) == h.spec.aborted
        if len(h.spec.layers) == 1:
            assert h.truth.transition_mm is None


def test_same_seed_same_holes_other_seed_other_holes() -> None:
    a, b, c = generate(5, seed=42), generate(5, seed=42), generate(5, seed=43)
    assert [h.trace.meta.content_hash for h in a] == [h.trace.meta.content_hash for h in b]
    assert [h.truth for h in a] == [h.truth for h in b]
    assert a[0].trace.meta.content_hash != c[0].trace.meta.content_hash


# ----------------------------------------------------------------- files and the command

def test_synth_command_writes_byte_identical_files_per_seed(tmp_path: Path) -> None:
    from appliance.evaluation import read_labels
    from appliance.ingest import parse_file

    assert main(["synth", "--n", "4", "--out", str(tmp_path / "a"), "--seed", "9"]) == 0
    assert main(["synth", "--n", "4", "--out", str(tmp_path / "b"), "--seed", "9"]) == 0
    assert main(["synth", "--n", "4", "--out", str(tmp_path / "c"), "--seed", "10"]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert len([n for n in names if n.endswith(".xls")]) == 4
    for n in names:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes()
    assert (tmp_path / "a" / "labels.csv").read_bytes() != (
        tmp_path / "c" / "labels.csv").read_bytes()

    header = (tmp_path / "a" / "labels.csv").read_text().splitlines()[0]
    assert header == "path,entry_mm,transition_mm,exit_mm,method,confidence,notes"
    rows = read_labels(tmp_path / "a" / "labels.csv")
    holes = generate(4, seed=9)
    for row, hole in zip(rows, holes, strict=True):
        assert row.method == "synthetic" and row.confidence == "high"
        assert row.notes == hole.spec.stack_type
        for name in ("entry", "transition", "exit"):
            want = hole.truth.get(name)
            got = row.points.get(name)
            assert (want is None) == (got is None)
            if want is not None:
                assert got == pytest.approx(want, abs=1e-4)
        trace = parse_file(tmp_path / "a" / row.path)
        assert trace.meta.variant == "v9"
        assert np.allclose(trace.depth_mm, hole.trace.depth_mm)
        assert np.allclose(trace.torque_a, hole.trace.torque_a)


def test_synth_command_json_and_variant(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from appliance.ingest import parse_file

    code = main(["synth", "--n", "2", "--out", str(tmp_path), "--seed", "1",
                 "--variant", "v4", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 2 and out["variant"] == "v4" and sum(out["stacks"].values()) == 2
    assert parse_file(tmp_path / "synth_00000.xls").meta.variant == "v4"
    assert main(["synth", "--n", "0", "--out", str(tmp_path / "x")]) == 2


# ----------------------------------------------------------------- field phenomena
# Each case: the phenomenon is really in the noiseless torque, and the truth is the
# half-height crossing computed here in closed form from the spec's levels (air 0 A, no
# wear or creep): on a quadratic point ramp between two levels it sits at sqrt(1/2) of the
# point length, whatever the levels, unless something else holds torque on the ramp.

SQRT_HALF = float(np.sqrt(0.5))


def _one_step(**kw) -> StackSpec:
    """_spec on one program step: no step change near any ramp."""
    return _spec(steps=(ProgramStep(1, 30.0, 3000.0, 2.0, 0.04),), backoff_mm=(), **kw)


def _median_between(hole, lo: float, hi: float) -> float:
    d = hole.trace.depth_mm
    return float(np.median(hole.noiseless_torque[(d > lo) & (d < hi)]))


def _phenomena(hole) -> set[str]:
    return set(filter(None, hole.trace.meta.extra["phenomena"].split(",")))


def test_precontact_bump_is_read_from_the_air_level() -> None:
    spec = _spec(precontact_mm=0.6, precontact_a=0.3)
    h = synthesize(spec)
    top, p = spec.top_mm, spec.point_length_mm
    assert _median_between(h, top - 1.5, top - 0.7) == pytest.approx(0.0, abs=1e-9)
    assert _median_between(h, top - 0.4, top - 0.02) == pytest.approx(0.3, abs=0.01)
    # the torque goes from the bump to the layer level: bump (1 - x^2) + level x^2 on
    # the ramp, half-height between the AIR (0) and the level (3 A)
    x = np.sqrt((1.5 - 0.3) / (3.0 - 0.3))
    assert h.truth.entry_mm == pytest.approx(top + x * p, abs=0.01)
    assert h.truth.entry_mm == pytest.approx(_independent_truth(h)["entry"], abs=0.01)
    assert _phenomena(h) == {"precontact"}


def test_dip_inside_a_layer_leaves_the_truth_alone() -> None:
    plain = synthesize(_spec())
    h = synthesize(_spec(dip_mm=8.5, dip_length_mm=0.6, dip_share=0.5))
    d = h.trace.depth_mm
    inside = (d > 8.5) & (d < 9.1)
    assert h.noiseless_torque[inside].min() == pytest.approx(1.5, abs=0.02)  # 50 % of 3 A
    assert _median_between(h, 7.0, 8.4) == pytest.approx(3.0, abs=1e-6)
    assert _median_between(h, 9.2, 11.0) == pytest.approx(3.0, abs=1e-6)
    assert h.truth == plain.truth
    assert _phenomena(h) == {"layer_dip"}


def test_two_stage_exit_is_the_half_height_of_the_whole_fall() -> None:
    spec = _one_step(exit_shelf_share=0.4, exit_shelf_mm=0.3)
    h = synthesize(spec)
    bottom, p = spec.boundaries_mm[-1], spec.point_length_mm
    shelf = _median_between(h, bottom + p + 0.03, bottom + p + 0.27)
    assert shelf == pytest.approx(0.4 * 25.0, abs=0.05)
    after = bottom + spec.exit_length_mm
    assert after == pytest.approx(bottom + p + 0.3 + max(0.15, 0.4 * p))
    assert _median_between(h, after + 0.05, after + 1.0) == pytest.approx(0.0, abs=1e-9)
    # 25 ((1 - s)(1 - x^2) + s) = 12.5 on the first stage
    x = np.sqrt(0.5 / (1.0 - 0.4))
    assert h.truth.exit_mm == pytest.approx(bottom + x * p, abs=0.01)
    assert h.truth.exit_mm == pytest.approx(_independent_truth(h)["exit"], abs=0.01)
    assert _phenomena(h) == {"two_stage_exit"}


@pytest.mark.parametrize("stack", [("ti", "cfrp"), ("al", "cfrp"), ("ti", "al")])
def test_hard_over_soft_transition_ramp_goes_down(stack: tuple[str, str]) -> None:
    levels = {"ti": 25.0, "al": 7.0, "cfrp": 2.0}
    if stack == ("ti", "al"):
        levels["ti"] = 30.0
    layers = tuple(Layer(m, t, levels[m]) for m, t in zip(stack, (7.0, 6.0), strict=True))
    h = synthesize(_one_step(layers=layers))
    b, p = h.spec.boundaries_mm, h.spec.point_length_mm
    assert _median_between(h, b[1] - 1.0, b[1]) == pytest.approx(levels[stack[0]], abs=1e-6)
    assert _median_between(h, b[1] + p, b[2] - 0.1) == pytest.approx(levels[stack[1]], abs=1e-6)
    for name, at in (("entry", b[0]), ("transition", b[1]), ("exit", b[2])):
        assert h.truth.get(name) == pytest.approx(at + SQRT_HALF * p, abs=0.01), name
        assert h.truth.get(name) == pytest.approx(_independent_truth(h)[name], abs=0.01)
    assert _phenomena(h) == {"hard_over_soft"}


def test_first_layer_too_thin_to_level_takes_its_peak() -> None:
    p = _spec().point_length_mm
    spec = _one_step(layers=(Layer("cfrp", p + 0.3, 3.0), Layer("ti", 8.0, 25.0)))
    h = synthesize(spec)
    b = spec.boundaries_mm
    # 0.3 mm at the first level, less than the convention's 0.2 mm once both ramps are
    # smoothed: the median over 1 mm after the entry ramp would take in the titanium
    assert _median_between(h, b[0] + p + 0.01, b[1] - 0.01) == pytest.approx(3.0, abs=1e-6)
    assert _median_between(h, b[0] + p + 0.1, b[0] + p + 1.1) > 3.3
    assert h.truth.entry_mm == pytest.approx(b[0] + SQRT_HALF * p, abs=0.01)
    assert h.truth.transition_mm == pytest.approx(b[1] + SQRT_HALF * p, abs=0.01)
    assert _phenomena(h) == {"thin_first_layer"}


def test_offset_step_before_contact_is_not_the_entry() -> None:
    base = _spec()
    spec = with_offset_step(base, base.top_mm - 2.5, -0.4, backoff_mm=0.3)
    assert len(spec.steps) == 3 and spec.steps[0].travel_mm == pytest.approx(2.5)
    assert sum(s.travel_mm for s in spec.steps) == pytest.approx(24.0)
    h = synthesize(spec)
    top, p = spec.top_mm, spec.point_length_mm
    t = h.trace
    change = int(np.flatnonzero(np.diff(t.step) != 0)[0]) + 1
    assert t.depth_mm[change - 1] == pytest.approx(top - 2.5, abs=0.01)
    assert np.all(h.noiseless_torque[:change] == pytest.approx(-0.4))  # negative net torque
    assert _median_between(h, top - 2.3, top - 0.1) == pytest.approx(0.0, abs=1e-9)
    assert h.truth.entry_mm == pytest.approx(top + SQRT_HALF * p, abs=0.01)
    assert h.truth.entry_mm == pytest.approx(_independent_truth(h)["entry"], abs=0.01)
    assert h.truth == synthesize(base).truth
    assert _phenomena(h) == {"offset_step"}


def test_offset_step_and_precontact_together_read_the_air_between() -> None:
    base = _spec(precontact_mm=0.8, precontact_a=0.25)
    h = synthesize(with_offset_step(base, base.top_mm - 1.6, -0.5))
    x = np.sqrt((1.5 - 0.25) / (3.0 - 0.25))
    assert h.truth.entry_mm == pytest.approx(base.top_mm + x * base.point_length_mm, abs=0.01)
    assert _phenomena(h) == {"precontact", "offset_step"}


def test_current_gain_scales_the_signal_not_the_truth() -> None:
    # cfrp over a soft aluminium: at gain 0.3 the levels differ by less than the
    # convention's 0.4 A, yet the hole (and its labels) are those of the gain-1 drill
    spec = _one_step(layers=(Layer("cfrp", 8.0, 1.0), Layer("al", 6.0, 2.2)))
    one = synthesize(spec)
    low = synthesize(replace(spec, current_gain=0.3))
    assert np.allclose(low.noiseless_torque, 0.3 * one.noiseless_torque)
    m = (one.trace.depth_mm > 14.5) & (one.trace.depth_mm < 17.0)
    assert np.median(low.trace.torque_a[m]) == pytest.approx(0.3 * 2.2, abs=0.06)
    assert np.median(low.trace.thrust_a[m]) == pytest.approx(
        0.3 * np.median(one.trace.thrust_a[m]), abs=0.02)
    assert low.truth == one.truth and one.truth.transition_mm is not None
    rescaled = truth_points(spec, low.trace.depth_mm, low.noiseless_torque, low.trace.step)
    assert rescaled.transition_mm is None  # what reading the low-gain signal would say
    assert _phenomena(low) == {"current_gain"}


def test_no_load_current_is_logged_on_the_drills_scale() -> None:
    spec = _one_step(layers=(Layer("cfrp", 8.0, 1.0),))
    one, low = synthesize(spec), synthesize(replace(spec, current_gain=0.3))
    assert one.trace.torque_empty_a is not None and low.trace.torque_empty_a is not None
    assert np.allclose(low.trace.torque_empty_a, 0.3 * one.trace.torque_empty_a, atol=1e-3)


def test_an_air_fragment_stops_before_contact_and_has_no_point() -> None:
    spec = _one_step(layers=(Layer("cfrp", 8.0, 1.0), Layer("al", 6.0, 2.2)))
    whole = synthesize(spec)
    stop = spec.top_mm - 1.0
    frag = synthesize(replace(spec, fragment_end_mm=stop))
    assert frag.truth == DepthPoints(None, None, None)
    assert 10 < len(frag.trace) < len(whole.trace)
    assert frag.trace.depth_mm.max() <= stop
    # what is left is the whole hole's first samples, and only air
    n = len(frag.trace)
    assert np.array_equal(frag.trace.torque_a, whole.trace.torque_a[:n])
    assert np.all(frag.noiseless_torque == frag.noiseless_torque[0])
    assert _phenomena(frag) == {"air_fragment"}
    assert frag.trace.meta.content_hash != whole.trace.meta.content_hash
    # drawn from a stream of their own: the other draws of a seed are unchanged
    rng_a, rng_b = np.random.default_rng(11), np.random.default_rng(11)
    drawn = [random_spec(rng_a) for _ in range(300)]
    assert 2 <= sum(s.fragment_end_mm is not None for s in drawn) <= 25
    for s, again in zip(drawn, (random_spec(rng_b) for _ in range(300)), strict=True):
        assert replace(s, fragment_end_mm=None) == replace(again, fragment_end_mm=None)
        if s.fragment_end_mm is not None:
            assert s.start_depth_mm + 0.5 <= s.fragment_end_mm <= s.top_mm - 0.3


def test_random_specs_draw_each_phenomenon_at_its_share() -> None:
    rng = np.random.default_rng(2024)
    specs = [random_spec(rng) for _ in range(600)]
    share = {name: np.mean([name in s.phenomena for s in specs]) for name in (
        "precontact", "layer_dip", "two_stage_exit", "hard_over_soft", "thin_first_layer",
        "offset_step", "current_gain")}
    for name, v in share.items():
        lo, hi = (0.10, 0.21) if name == "current_gain" else (0.04, 0.13)
        assert lo <= v <= hi, (name, v)
    assert np.mean([not s.phenomena for s in specs]) > 0.35
    for s in specs:
        if "precontact" in s.phenomena:
            assert 0.2 <= s.precontact_mm <= 1.0
            assert s.precontact_a < min(0.45, 0.3 * s.layers[0].torque_a)
        if "offset_step" in s.phenomena:
            assert 1.2 <= s.top_mm - s.offset_step_mm <= 6.0
            assert -0.6 <= s.offset_before_a <= -0.15
            ends = np.cumsum([st.travel_mm for st in s.steps])
            assert np.min(np.abs(ends - s.offset_step_mm)) < 0.01  # a step change there
        if "current_gain" in s.phenomena:
            assert 0.3 <= s.current_gain <= 3.0
        if "two_stage_exit" in s.phenomena:
            assert 0.3 <= s.exit_shelf_share <= 0.45 and 0.1 <= s.exit_shelf_mm <= 0.5


def test_random_phenomena_holes_keep_an_exact_truth() -> None:
    rng = np.random.default_rng(77)
    seen: dict[str, int] = {}
    for _ in range(800):
        spec = random_spec(rng)
        if not spec.phenomena or all(seen.get(n, 0) >= 5 for n in spec.phenomena):
            continue
        h = synthesize(spec)
        for n in spec.phenomena:
            seen[n] = seen.get(n, 0) + 1
        mine = _independent_truth(h)
        for name, value in mine.items():
            truth = h.truth.get(name)
            assert (truth is None) == (value is None), (spec.seed, spec.phenomena, name)
            if truth is not None:
                assert abs(truth - value) < 0.02, (spec.seed, spec.phenomena, name, truth, value)
        assert h.truth.order_problem() is None
        if spec.fragment_end_mm is not None:
            assert h.truth == DepthPoints(None, None, None)
            continue
        assert (h.truth.entry_mm is None) == spec.starts_inside
        assert (h.truth.exit_mm is None) == spec.aborted
        if len(spec.layers) > 1:
            assert h.truth.transition_mm is not None, (spec.seed, spec.phenomena)
        if min(seen.get(n, 0) for n in _ALL_PHENOMENA) >= 5:
            break
    assert min(seen.get(n, 0) for n in _ALL_PHENOMENA) >= 5, seen


_ALL_PHENOMENA = ("precontact", "layer_dip", "two_stage_exit", "hard_over_soft",
                  "thin_first_layer", "offset_step", "current_gain")
