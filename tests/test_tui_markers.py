"""The hole screen's editing logic: markers, snapping to half-height crossings, the plot."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.points import DepthPoints
from tui.markers import COARSE_STEP_MM, MarkerSet, PlotTrace, half_height_crossings, trace_from_json
from tui.widgets.plot import TracePlot, bin_minmax


def ramps(entry: float, transition: float, exit_: float, n: int = 4000,
          noise: float = 0.03, seed: int = 0) -> PlotTrace:
    rng = np.random.default_rng(seed)
    depth = np.linspace(0.5, exit_ + 5, n)

    def ramp(at: float, height: float) -> np.ndarray:
        return height * np.clip((depth - at) / 0.6 + 0.5, 0, 1)

    torque = ramp(entry, 2.0) + ramp(transition, 3.0) - ramp(exit_, 5.0)
    return PlotTrace(depth, torque + rng.normal(0, noise, n), None,
                     np.where(depth < 10, 1, 2))


def test_crossings_sit_at_the_half_heights() -> None:
    trace = ramps(3.0, 11.5, 21.25)
    found = half_height_crossings(trace)
    assert len(found) == 3
    assert np.allclose(found, [3.0, 11.5, 21.25], atol=0.1)


def test_crossings_ignore_retravel_after_a_backward_move() -> None:
    base = ramps(3.0, 11.5, 21.25, noise=0.0)
    # the tool backs off 1 mm at 8 mm and drills the same depth again with low torque
    cut = int(np.searchsorted(base.depth_mm, 8.0))
    back = np.linspace(8.0, 7.0, 50)
    depth = np.concatenate([base.depth_mm[:cut], back, back[::-1], base.depth_mm[cut:]])
    torque = np.concatenate([base.torque_a[:cut], np.zeros(100), base.torque_a[cut:]])
    found = half_height_crossings(PlotTrace(depth, torque))
    assert np.allclose(found, [3.0, 11.5, 21.25], atol=0.1)


def test_snap_moves_to_the_next_crossing_each_way() -> None:
    trace = ramps(3.0, 11.5, 21.25)
    markers = MarkerSet.start(DepthPoints(5.0, None, 20.0), None, trace.depth_range)
    assert markers.snap(trace, 1) == pytest.approx(11.5, abs=0.1)
    assert markers.snap(trace, -1) == pytest.approx(3.0, abs=0.1)
    assert markers.snap(trace, -1) is None  # nothing shallower: it stays
    assert markers.values["entry"] == pytest.approx(3.0, abs=0.1)


def test_snap_steps_through_ramps_of_the_selected_points_direction() -> None:
    trace = ramps(3.0, 11.5, 21.25)
    markers = MarkerSet.start(DepthPoints(3.0, None, 15.0), None, trace.depth_range)
    markers.select("exit")  # an exit sits on a fall: the rises at 3 and 11.5 are skipped
    assert markers.snap(trace, -1) is None and markers.values["exit"] == 15.0
    assert markers.snap(trace, 1) == pytest.approx(21.25, abs=0.1)
    # the same reading that places a model's answers
    from appliance.estimators.snap import snap

    ref = snap(_as_trace(trace), {"entry": 3.1, "transition": 11.4, "exit": 21.2})
    assert markers.values["exit"] == ref["exit"]
    assert trace.crossings_mm("entry") == [ref["entry"], ref["transition"]]


def _as_trace(plot: PlotTrace):
    from appliance.trace import Trace, TraceMeta

    n = len(plot.depth_mm)
    meta = TraceMeta(source="plot", content_hash="0" * 64, variant="synthetic")
    return Trace(meta, plot.depth_mm, plot.torque_a, plot.torque_a * 0.5,
                 np.asarray(plot.step, dtype=np.int32), np.zeros(n, np.int64))


def test_moves_clamp_to_the_trace_and_thickness_follows() -> None:
    markers = MarkerSet.start(DepthPoints(3.0, 11.0, 21.0), None, (0.5, 26.0))
    markers.move(0.05)
    assert markers.values["entry"] == pytest.approx(3.05)
    markers.select("exit")
    markers.move(-COARSE_STEP_MM)
    assert markers.thickness_mm == pytest.approx(20.0 - 3.05)
    for _ in range(40):
        markers.move(COARSE_STEP_MM)
    assert markers.values["exit"] == 26.0
    assert markers.touched == {"entry", "exit"}


def test_absent_point_is_null_and_comes_back_between_neighbours() -> None:
    markers = MarkerSet.start(DepthPoints(3.0, 11.0, 21.0), None, (0.5, 26.0))
    markers.select("transition")
    assert markers.toggle_absent() is None
    assert markers.points.transition_mm is None
    assert markers.toggle_absent() == pytest.approx(12.0)  # mid-way between entry and exit


def test_the_latest_label_wins_over_the_estimate_and_order_is_checked() -> None:
    markers = MarkerSet.start(DepthPoints(3.0, 11.0, 21.0), DepthPoints(3.2, None, 20.9),
                              (0.5, 26.0))
    assert markers.points.as_dict() == {"entry_mm": 3.2, "transition_mm": None,
                                        "exit_mm": 20.9}
    markers.set("entry", 22.0)
    assert "must be shallower" in markers.problem()


def test_trace_json_needs_depth_and_torque() -> None:
    trace = trace_from_json({"hole_id": "a", "depth_mm": [1, 2], "torque_a": [0, 1],
                             "thrust_a": [0, 0], "step": [1, 1]})
    assert trace.depth_range == (1.0, 2.0)
    with pytest.raises(ValueError, match="torque_a"):
        trace_from_json({"depth_mm": [1, 2]})
    with pytest.raises(ValueError, match="2 depths but 1 torques"):
        trace_from_json({"depth_mm": [1, 2], "torque_a": [0]})


def test_bins_keep_each_columns_extremes() -> None:
    x = np.array([0.1, 0.2, 0.6, 0.7, 0.9])
    y = np.array([1.0, -2.0, 5.0, 4.0, 3.0])
    mins, maxs = bin_minmax(x, y, 0.0, 1.0, 2)
    assert mins.tolist() == [-2.0, 3.0] and maxs.tolist() == [1.0, 5.0]


def test_plot_draws_a_ten_thousand_sample_trace_with_markers() -> None:
    trace = ramps(3.0, 11.5, 21.25, n=10_000)
    markers = MarkerSet.start(DepthPoints(3.0, 11.5, 21.25), None, trace.depth_range)
    plot = TracePlot()
    plot.trace, plot.markers, plot.estimate = trace, markers, {"entry": 3.4}
    plot.view.lo, plot.view.hi = trace.depth_range
    text = plot.draw(120, 30).plain.splitlines()
    assert len(text) == 30
    tags = text[0]
    # the operator's markers are tagged in depth order; the estimate's entry in lower case
    assert tags.index("E") < tags.index("e") < tags.index("T") < tags.index("X")
    body = "".join(text[1:-1])
    assert any(0x2800 < ord(c) <= 0x28FF for c in body)  # braille dots drawn
    assert text[-1].startswith("mm")
