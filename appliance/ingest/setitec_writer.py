"""Trace -> Setitec log text, for the project's own fixtures and the synthetic data set.

The layout follows the real logs of each variant (format doc sections 2-6) closely enough
that parse_setitec reads back the same arrays (to the written 3 decimals) and metadata.
Arrays a variant cannot hold are written as the logs would (rpm 0 outside v4) and
missing no-load currents as 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from appliance.ingest.setitec import V4_COLUMNS, V7_COLUMNS, V9_COLUMNS, V11_HEADER
from appliance.ingest.values import setitec_date
from appliance.trace import ProgramStep, Trace

VARIANTS = ("v4", "v7", "v8", "v9", "v11")
_V4_BOX_BREAK = 9  # v4 breaks the Control Box key row after 'BOX Maintenance Date'
_V4_BOX_BLANKS = 48
_BOX_KEYS = ["BOX Name", "BOX Type", "BOX SN", "BOX STSE", "BOX Customer Info", "BOX Release",
             "BOX Firmware Version", "BOX Production Date", "BOX Maintenance Date",
             "BOX Operation Time", "BOX Power Supply Limit", "BOX Lub Pump Coef."]
_PROGRAM_TAIL = ["Thrust Min (A)", "Torque Min (A)", "Thrust Safety (A)", "Torque Safety (A)",
                 "Gap (mm)", "Peck (nb)", "Delay (ms)", "Stroke Limit (A)", "Thrust Limit (A)",
                 "Torque Limit (A)", "LUB AIR", "LUB FLOW", "Vacuum", "Material"]
_STEP_RESULT_KEYS = ["Step Number", "Stop Code", "Duration (s)", "Distance M1", "Distance M2",
                     "M1 Max Amp", "M2 Max Amp", "M1 No Load Amp", "M2 No Load Amp",
                     "Gap Max (mm)"]


def write_setitec(trace: Trace, variant: str = "v9", separator: str = "\t") -> bytes:
    """The Setitec log of `trace` in the layout of `variant` (v4, v7, v8, v9 or v11)."""
    if variant not in VARIANTS:
        raise ValueError(f"write_setitec supports {VARIANTS}, not {variant!r}")
    if separator not in ("\t", ";"):
        raise ValueError("separator must be a tab or ';'")
    version = int(variant[1:])
    meta = trace.meta
    sep = separator
    lines: list[str] = []

    def section(name: str) -> None:
        if lines:
            lines.append("")
        lines.append(f"*** {name} ***")

    def row(values: Sequence[object]) -> None:
        lines.append(sep.join(_cell(v) for v in values))

    section("General Infos")
    general: list[tuple[str, object]] = [
        ("Version", version), ("Date", setitec_date(meta.cycle_date)),
        ("Sample Rate (Hz)", _number(meta.sample_rate_hz))]
    if version >= 7:
        general.append(("Drilling Cycle ID", meta.extra.get("drilling_cycle_id", "0")))
    if version in (8, 9):
        general.append(("Decimal Separator separator", "Comma"))
    elif version >= 11:
        general.append(("Decimal Separator", "Comma"))
    row([k for k, _ in general])
    row([v for _, v in general])

    section("Control Box Datas")
    serial = meta.drill_serial or ""
    box_values = [meta.extra.get("box_name", serial), "CB V2 - Standard", serial, "", "", "0",
                  "V 3.2.0", "01/01/2016", "01/01/2016", "0", "3000", "1.000"]
    if version == 4:
        row(_BOX_KEYS[:_V4_BOX_BREAK])
        lines.extend([""] * _V4_BOX_BLANKS)
        row(_BOX_KEYS[_V4_BOX_BREAK - 1:])
        row(box_values)
    else:
        row(_BOX_KEYS + ["Pset Default Selection"])
        row(box_values + ["FALSE"])

    section("Motor Datas")
    row(["Motor Name", "Motor Type", "Motor STSE", "Motor SN", "Motor Operation Time",
         "Motor M2 Ratio", "Motor M1 CW Ratio", "Motor M1 CCW Ratio", "Motor Winch Limit"])
    row(["L_EDU", "L_EDU", "5000", meta.extra.get("motor_serial", ""), "0", "21.923", "0.947",
         "0.947", "0"])

    section("Head Datas")
    head_keys = ["Head Name", "Head Type", "Head TAG UID", "Head Global Counter"]
    head_values: list[object] = [meta.head_name or "", "Concentric Collet",
                                 meta.extra.get("head_tag_uid", "Light"),
                                 _opt(meta.head_global_counter)]
    if version == 4:
        head_keys.append("Head Local Counter")
        head_values.append(_opt(meta.head_local_counter))
    else:
        head_keys += ["Head Local Counter 1", "Head Local Counter 2"]
        head_values += [_opt(meta.head_local_counter), _opt(meta.head_local_counter)]
    head_keys += ["Head M1 Ratio", "Head M2 Ratio", "Customer Info"]
    head_values += ["1.000", "1.000", ""]
    if version >= 9:
        head_keys += ["Micropeck Osc.", "Micropeck Amplitude"]
        head_values += ["0", "0"]
    if version >= 11:
        head_keys.append("Module Disable")
        head_values.append("FALSE")
    row(head_keys)
    row(head_values)

    section("Pset")
    row(["Pset Type", "Pset n°" if version < 8 else "Pset Nb.", "Version"])
    row(["Standard", meta.extra.get("pset", "0"), "9"])

    section("Cycle Parameters")
    row(["Max cycles", "CC Pressure", "Max Stroke (mm)", "Vacuum Delay (ms)"])
    row([300, 9, 0.0, 0])
    if version >= 7:
        row(["Comment"])
        lines.append("")  # the Comment key row has no value row
    row(["Cutting tool breakage On/Off", "Cutting tool breakage DEP (mm)",
         "Cutting tool breakage Thrust (A)", "Cutting tool breakage Torque (A)"])
    row([0.0, 0.0, 0.0, 0.0])

    section("Program")
    travel = "DEP (mm)" if version < 8 else "Stroke (mm)"
    feed = ("AV (mm/s)", "AV (mm/tr)") if version == 4 else ("Feed (mm/s)", "Feed (mm/tr)")
    row(["Step Nb", "Step On/Off", travel, "RPM", *feed, "Thrust Max (A)", "Torque Max (A)",
         *_PROGRAM_TAIL])
    for step in meta.program:
        row(_program_row(step))

    section("Results")
    depth = trace.depth_mm
    distance = abs(float(depth[0])) if version == 9 else float(depth.max() if len(depth) else 0)
    results: list[tuple[str, object]] = [
        ("Cycle Time (s)", len(trace) / meta.sample_rate_hz), ("Distance (mm)", distance)]
    if version >= 7:
        results.append(("Cycle OK", "" if meta.cycle_ok is None else str(meta.cycle_ok)))
    row([k for k, _ in results])
    row([v for _, v in results])

    if version >= 7:
        section("Step Results")
        row(_STEP_RESULT_KEYS)
        for values in _step_results(trace):
            row(values)

    section("Datas")
    header, columns = _datas(trace, version)
    row(list(header))
    text = "\n".join(lines) + "\n"
    return (text + _rows(columns, sep)).encode("latin-1", errors="replace")


def _program_row(step: ProgramStep) -> list[object]:
    per_rev = step.feed_mm_rev if step.feed_mm_rev is not None else math.inf
    cells: list[object] = [step.step, 1, step.travel_mm, step.rpm, step.feed_mm_s, per_rev,
                           step.thrust_max_a, step.torque_max_a]
    return cells + [0.0] * len(_PROGRAM_TAIL)


def _runs(step: np.ndarray) -> list[tuple[int, int]]:
    cuts = np.flatnonzero(np.diff(step)) + 1
    return list(zip(np.r_[0, cuts].tolist(), np.r_[cuts, len(step)].tolist(), strict=True))


def _step_results(trace: Trace) -> list[list[object]]:
    out: list[list[object]] = []
    zeros = np.zeros(len(trace))
    torque_empty = trace.torque_empty_a if trace.torque_empty_a is not None else zeros
    thrust_empty = trace.thrust_empty_a if trace.thrust_empty_a is not None else zeros
    for start, end in _runs(trace.step):
        codes = trace.stop_code[start:end]
        code = int(codes[codes != 0][-1]) if np.any(codes) else 0
        depth = trace.depth_mm[start:end]
        out.append([int(trace.step[start]), code, (end - start) / trace.meta.sample_rate_hz,
                    0.0, float(depth.max() - depth.min()),
                    float(trace.torque_a[start:end].max()), float(trace.thrust_a[start:end].max()),
                    float(torque_empty[start]), float(thrust_empty[start]), 0.0])
    return out


def _datas(trace: Trace, version: int) -> tuple[tuple[str, ...], list[np.ndarray]]:
    n = len(trace)
    zeros = np.zeros(n)
    rate = trace.meta.sample_rate_hz
    base = [-trace.depth_mm, trace.torque_a, trace.thrust_a,
            trace.torque_empty_a if trace.torque_empty_a is not None else zeros,
            trace.thrust_empty_a if trace.thrust_empty_a is not None else zeros,
            trace.step.astype(np.float64), trace.stop_code.astype(np.float64)]
    power = trace.power_w if trace.power_w is not None else zeros
    if version == 4:
        rpm = trace.rpm if trace.rpm is not None else _program_rpm(trace)
        feed = np.abs(np.r_[0.0, np.diff(trace.depth_mm)]) * rate
        return V4_COLUMNS, base + [zeros, zeros, rpm, feed, power]
    if version in (7, 8):
        return V7_COLUMNS, base + [zeros, zeros, power, zeros]
    if version == 9:
        return V9_COLUMNS, base + [power, zeros]
    return V11_HEADER, base + [power, zeros]  # v11: 10 names over 9 fields, as logged


def _program_rpm(trace: Trace) -> np.ndarray:
    """v4 logs spindle speed per sample, negative (direction): the programmed RPM stands in."""
    by_step = {p.step: -p.rpm for p in trace.meta.program}
    return np.array([by_step.get(int(s), 0.0) for s in trace.step], dtype=np.float64)


def _rows(columns: list[np.ndarray], sep: str) -> str:
    # One vectorised format per column; 3 decimals as the controller writes them.
    cells = [np.char.replace(np.char.mod("%.3f", np.round(c, 3) + 0.0), ".", ",")
             for c in columns]
    table = np.stack(cells, axis=1) if cells else np.empty((0, 0), dtype=str)
    return "".join(sep.join(r) + "\n" for r in table.tolist())


def _number(value: float) -> object:
    return int(value) if float(value).is_integer() else value


def _opt(value: int | None) -> object:
    return "" if value is None else value


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "Inf"
        return f"{value:.3f}".replace(".", ",")
    if value is None:
        return ""
    return str(value)

