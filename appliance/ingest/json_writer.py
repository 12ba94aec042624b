"""Trace -> JSON ua-data messages shaped like data/mqtt (format doc section 8).

Always a Trace and a Result message; asset companions (Heads, Controllers, CuttingTools)
are added only when the metadata has something for them to carry, so that head name,
controller serial and local counter survive a round trip through parse_json_messages.
Stop codes travel per step (as the controller sends them): the parser puts each step's
code back on that step's last samples.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import numpy as np

from appliance.trace import Trace

NAMESPACE = "nsu=http://airbus.com/IJT/ADrilling;s=Objects.DeviceSet."
_RESULT = "ResultManagement.Results.0."
_STEP_VALUES = _RESULT + "ResultContent.StepResults.0.StepResultValues."
_TRACES = _RESULT + "ResultContent.Trace.StepTraces."


def write_json_messages(trace: Trace) -> dict[str, bytes]:
    """{"Trace.json": ..., "Result.json": ...} (+ asset messages when metadata has them)."""
    meta = trace.meta
    device = meta.extra.get("device", "appliance")
    result_id = meta.head_global_counter if meta.head_global_counter is not None else 1
    stamp = _stamp(meta.cycle_date)
    interval = int(meta.sample_rate_hz) if float(meta.sample_rate_hz).is_integer() \
        else meta.sample_rate_hz

    channels: dict[str, list[Any] | None] = {
        "Position": _values(-trace.depth_mm), "IntensityTorque": _values(trace.torque_a),
        "IntensityThrust": _values(trace.thrust_a), "StepNumber": trace.step.tolist(),
        "Power": None if trace.power_w is None else _values(trace.power_w),
        "GapLength": [None] * len(trace)}
    trace_payload: dict[str, object] = {}
    for name, values in channels.items():
        base = f"{_TRACES}{name}Trace."
        trace_payload[base + "StepResultId"] = result_id
        trace_payload[base + "SamplingInterval"] = interval
        if values is not None:  # PowerTrace sometimes lacks Values in the real messages
            trace_payload[base + "StepTraceContent[0].Values"] = values

    steps, stops, torque_empty, thrust_empty = _per_step(trace)
    result_payload: dict[str, object] = {
        _RESULT + "ResultMetaData.CreationTime": stamp,
        _RESULT + "ResultMetaData.SerialNumber": meta.extra.get("result_serial", "0"),
        _RESULT + "ResultMetaData.InternalRecipeType": "Standard",
        _RESULT + "ResultMetaData.ResultId": result_id,
        _STEP_VALUES + "StepNumber": _scalar_or_list(steps),
        _STEP_VALUES + "StopCode": _scalar_or_list(stops),
        _RESULT + "ResultContent.OverallResultValues.CycleTime":
            round(len(trace) / meta.sample_rate_hz, 2),
    }
    if meta.cycle_ok is not None:
        result_payload[_RESULT + "ResultMetaData.ResultEvaluation"] = meta.cycle_ok
    if torque_empty is not None:
        result_payload[_STEP_VALUES + "IntensityTorqueEmpty"] = _scalar_or_list(torque_empty)
    if thrust_empty is not None:
        result_payload[_STEP_VALUES + "IntensityThrustEmpty"] = _scalar_or_list(thrust_empty)

    out = {"Trace.json": _message(device, trace_payload, stamp),
           "Result.json": _message(device, result_payload, stamp)}
    assets: dict[str, dict[str, object]] = {
        # the counter equals the ResultId, as in the rig's messages: the bus pairs on it
        "Heads.json": {"AssetManagement.Assets.Heads.0.Identification.DefaultInstanceBrowseName":
                       meta.head_name,
                       "AssetManagement.Assets.Heads.0.Identification.SerialNumber":
                       meta.extra.get("head_serial"),
                       "AssetManagement.Assets.Heads.0.LifetimeCounters.0.LifeTimeCycleCounter":
                       result_id if meta.head_name is not None else None},
        "Controllers.json": {"AssetManagement.Assets.Controllers.0.Identification.SerialNumber":
                             meta.drill_serial},
        "CuttingTools.json": {
            "AssetManagement.Assets.CuttingTools.0.OperationCounters.OperationCycleCounter":
            meta.head_local_counter},
    }
    for name, payload in assets.items():
        kept = {k: v for k, v in payload.items() if v is not None}
        if kept:
            out[name] = _message(device, kept, stamp)
    return out


def _stamp(cycle_date: str | None) -> str:
    # CreationTime is the controller's local time marked Z (format doc section 8).
    if not cycle_date:
        return "1970-01-01T00:00:00Z"
    return cycle_date if cycle_date.endswith("Z") else cycle_date + "Z"


def _values(values: np.ndarray) -> list[float]:
    rounded: list[float] = np.round(values.astype(np.float64), 3).tolist()
    return rounded


def _scalar_or_list(values: list[Any]) -> object:
    return values[0] if len(values) == 1 else values


def _per_step(trace: Trace) -> tuple[list[int], list[int], list[float] | None,
                                     list[float] | None]:
    cuts = np.flatnonzero(np.diff(trace.step)) + 1
    starts = np.r_[0, cuts].tolist()
    ends = np.r_[cuts, len(trace)].tolist()
    steps, stops = [], []
    for start, end in zip(starts, ends, strict=True):
        codes = trace.stop_code[start:end]
        steps.append(int(trace.step[start]))
        stops.append(int(codes[codes != 0][-1]) if np.any(codes) else 0)

    def first(values: np.ndarray | None) -> list[float] | None:
        return None if values is None else [round(float(values[s]), 3) for s in starts]

    return steps, stops, first(trace.torque_empty_a), first(trace.thrust_empty_a)


def _message(device: str, payload: dict[str, object], stamp: str) -> bytes:
    body = {
        "MessageId": str(uuid.uuid5(uuid.NAMESPACE_URL, device + json.dumps(
            sorted(payload), separators=(",", ":")) + stamp)),
        "MessageType": "ua-data",
        "PublisherId": "appliance",
        "Messages": {
            "DataSetWriterId": device,
            "SequenceNumber": 1,
            "Timestamp": stamp,
            "MessageType": "ua-keyframe",
            "Payload": {f"{NAMESPACE}{device}.{path}": {"Value": value, "SourceTimestamp": stamp}
                        for path, value in payload.items()},
        },
    }
    return json.dumps(body, separators=(",", ":")).encode("utf-8")
