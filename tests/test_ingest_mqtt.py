"""JSON messages: the real folders in ../shared/data/mqtt and hand-made message variants."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from appliance.errors import IngestError
from appliance.ingest import iter_inputs, parse_bytes, parse_file, parse_json_messages
from appliance.ingest.fixtures import sample_trace
from appliance.ingest.json_writer import write_json_messages
from appliance.ingest.mqtt import read_message_folder
from appliance.trace import Trace

PAIRS = {  # format doc section 8: messages <-> the matching XLS, sample for sample
    "data0/Trace.json": "mqtt-examples/23120040_23120040_ST_2409_59.xls",
    "data1/Trace.json": "mqtt-examples/23120040_23120040_ST_2412_60.xls",
    "data2/Trace.json": "mqtt-examples/17070141_17070141_ST_59_55.xls",
    "extra/data.json": "mqtt-examples/17070141_17070141_ST_59_55.xls",
    "extra/data-wh.json": "mqtt-examples/17070141_17070141_ST_59_55.xls",
}


def final_codes(trace: Trace) -> dict[int, int]:
    """Each step run's last non-zero stop code."""
    out = {}
    for s in np.unique(trace.step):
        codes = trace.stop_code[trace.step == s]
        if np.any(codes):
            out[int(s)] = int(codes[codes != 0][-1])
    return out


def test_every_mqtt_input_parses_or_is_rejected_precisely(mqtt_dir: Path) -> None:
    results = list(iter_inputs([mqtt_dir]))
    files = sorted(p for p in mqtt_dir.rglob("*") if p.suffix.lower() in (".json", ".xls"))
    assert [r.source for r in results] == [str(p) for p in files]
    for r in results:
        assert (r.trace is not None) + (r.error is not None) + r.companion == 1, r.source
        assert r.group == Path(r.source).parent.name
        if r.error is not None:
            assert r.error.source == r.source
            assert not r.error.problem.startswith("unexpected")
    errors = {str(Path(r.source).relative_to(mqtt_dir)): r.error for r in results if r.error}
    assert set(errors) == {"data_20250626/Trace.json", "data_20250626/ResultManagement.json"}
    cut = errors["data_20250626/Trace.json"]
    assert "cut off" in cut.problem and "char 20000" in (cut.where or "")
    assert "no matching Trace" in errors["data_20250626/ResultManagement.json"].problem
    traces = {str(Path(r.source).relative_to(mqtt_dir)): r.trace for r in results if r.trace}
    assert set(traces) == {"data0/Trace.json", "data1/Trace.json", "data2/Trace.json",
                           "data_20250326/Trace.json", "data_20250623/Trace.json",
                           "extra/MQTT_Curve_Info_20240304_14H27.json", "extra/data.json",
                           "extra/data-wh.json"}
    companions = [r for r in results if r.companion]
    assert any(r.source.endswith("data_20250626/Heads.json") for r in companions)


@pytest.mark.parametrize("message", sorted(PAIRS))
def test_messages_equal_the_matching_xls(mqtt_dir: Path, setitec_dir: Path,
                                         message: str) -> None:
    got = parse_file(mqtt_dir / message)
    xls = parse_file(setitec_dir / PAIRS[message])
    assert len(got) == len(xls)
    for name in ("depth_mm", "torque_a", "thrust_a", "step", "torque_empty_a",
                 "thrust_empty_a"):
        assert np.array_equal(getattr(got, name), getattr(xls, name)), name
    if got.power_w is not None:
        assert np.array_equal(got.power_w, xls.power_w)
    expected = final_codes(xls)
    for step, code in final_codes(got).items():
        assert expected[step] == code
    assert got.meta.variant == "json"


def test_joined_metadata(mqtt_dir: Path) -> None:
    data0 = parse_file(mqtt_dir / "data0/Trace.json")
    raw = (mqtt_dir / "data0/Trace.json").read_bytes() \
        + (mqtt_dir / "data0/Result.json").read_bytes()
    assert data0.meta.content_hash == hashlib.sha256(raw).hexdigest()
    assert data0.meta.head_global_counter == 2409 and data0.meta.cycle_ok is True
    assert data0.power_w is None  # PowerTrace without Values
    assert data0.meta.extra["family"] == "AFastening"
    data2 = parse_file(mqtt_dir / "data2/Trace.json")
    assert "StopCode" in data2.meta.extra["ignored_step_fields"]  # 2 codes for 4 steps
    june = parse_file(mqtt_dir / "data_20250623/Trace.json")  # .MeasuredValue, string ids
    assert june.meta.head_global_counter == 1210 and june.meta.cycle_ok is False
    assert june.meta.head_name == "41" and june.meta.drill_serial == "24060293"
    assert june.meta.head_local_counter == 214
    assert june.torque_empty_a is not None and np.all(june.torque_empty_a == 3.076)


def test_xls_dump_in_a_message_folder_is_one_hole(mqtt_dir: Path) -> None:
    results = {Path(r.source).name: r for r in iter_inputs([mqtt_dir / "data_20250326"])}
    assert results["raw.json"].companion
    trace = results["Trace.json"].trace
    assert trace is not None and len(trace) == 9769
    assert [s.step for s in trace.meta.program] == [1, 2, 3]  # lent by raw.json
    alone = parse_bytes((mqtt_dir / "data_20250326/raw.json").read_bytes(), "raw.json")
    assert alone.meta.extra["shape"] == "xls dump"
    for name in ("depth_mm", "torque_a", "thrust_a", "step", "torque_empty_a", "power_w"):
        assert np.array_equal(getattr(alone, name), getattr(trace, name)), name
    # The dump logs each step's code on 2-5 final rows; the messages only per step.
    assert final_codes(alone) == final_codes(trace)
    assert alone.meta.head_name == "114-V3-003-MQ" and alone.meta.head_local_counter == 30


# --- hand-made message variants ---------------------------------------------------------


@pytest.fixture
def messages() -> dict[str, dict]:
    return {k: json.loads(v) for k, v in write_json_messages(sample_trace(25)).items()}


def _payload(message: dict) -> dict:
    return message["Messages"]["Payload"]


def _encode(messages: dict[str, dict]) -> dict[str, bytes]:
    return {k: json.dumps(v).encode() for k, v in messages.items()}


def _rename(message: dict, old: str, new: str) -> None:
    payload = _payload(message)
    for key in list(payload):
        payload[key.replace(old, new)] = payload.pop(key)


def test_measured_value_suffix_string_ids_and_afastening(messages: dict[str, dict]) -> None:
    base = parse_json_messages(_encode(messages), "base")[0]
    result = _payload(messages["Result.json"])
    for key in list(result):
        if "StepResultValues." in key:
            result[key + ".MeasuredValue"] = result.pop(key)
        if key.endswith("ResultId"):
            result[key]["Value"] = str(result[key]["Value"])
    _rename(messages["Trace.json"], "/ADrilling;", "/AFastening;")
    for key, entry in _payload(messages["Trace.json"]).items():
        if key.endswith("StepNumberTrace.StepTraceContent[0].Values"):
            entry["Value"] = [float(v) for v in entry["Value"]]  # StepNumber as float
    trace = parse_json_messages(_encode(messages), "variant")[0]
    assert trace.equals(base) and trace.meta.extra["family"] == "AFastening"


def test_scalar_step_fields_for_a_single_step() -> None:
    one = sample_trace(25)
    one = Trace(meta=one.meta, depth_mm=one.depth_mm, torque_a=one.torque_a,
                thrust_a=one.thrust_a, step=np.ones(len(one), dtype=np.int32),
                stop_code=np.r_[np.zeros(len(one) - 2, dtype=np.int64), 64, 64],
                torque_empty_a=np.full(len(one), 5.078), thrust_empty_a=np.full(len(one), 0.27))
    raw = write_json_messages(one)
    assert '"StopCode","Value":' not in raw["Result.json"].decode()
    result = json.loads(raw["Result.json"])
    assert any(isinstance(v["Value"], int) and k.endswith("StopCode")
               for k, v in _payload(result).items())
    assert parse_json_messages(raw, "one")[0].equals(one)


def test_join_needs_same_device_and_id(messages: dict[str, dict]) -> None:
    _rename(messages["Result.json"], "DeviceSet.appliance.", "DeviceSet.other.")
    entries = {e.name: e for e in read_message_folder(_encode(messages), "folder")}
    assert "no Result message for device 'appliance'" in entries["Trace.json"].error.problem
    assert "device 'other'" in entries["Result.json"].error.problem
    assert "unreadable" not in entries["Result.json"].error.problem
    with pytest.raises(IngestError):
        parse_json_messages(_encode(messages), "folder")


def test_missing_position_values_and_unequal_lengths(messages: dict[str, dict]) -> None:
    trace = _payload(messages["Trace.json"])
    key = next(k for k in trace if k.endswith("PositionTrace.StepTraceContent[0].Values"))
    short = json.loads(json.dumps(messages))
    _payload(short["Trace.json"])[key]["Value"] = trace[key]["Value"][:-1]
    with pytest.raises(IngestError, match="channel lengths differ"):
        parse_json_messages(_encode(short), "f")
    del trace[key]["Value"]
    with pytest.raises(IngestError, match="lacks PositionTrace values"):
        parse_json_messages(_encode(messages), "f")


def test_channel_values_are_numbers_or_all_null(messages: dict[str, dict]) -> None:
    """A bool, null or string among a channel's numbers is named with its index (a bool is
    not a number here, though Python counts it as one); a channel all null is absent."""
    trace = _payload(messages["Trace.json"])
    torque = next(k for k in trace if k.endswith("IntensityTorqueTrace.StepTraceContent[0].Values"))
    power = next(k for k in trace if k.endswith("PowerTrace.StepTraceContent[0].Values"))
    for bad, shown in ((True, "True"), (None, "None"), ("1.5", "'1.5'")):
        variant = json.loads(json.dumps(messages))
        _payload(variant["Trace.json"])[torque]["Value"][3] = bad
        with pytest.raises(IngestError, match=rf"IntensityTorqueTrace\[3\] is {shown}, not a "):
            parse_json_messages(_encode(variant), "f")
    assert parse_json_messages(_encode(messages), "f")[0].power_w is not None
    trace[power]["Value"] = [None] * len(trace[power]["Value"])
    assert parse_json_messages(_encode(messages), "f")[0].power_w is None


def test_bodies_parse_bytes_accepts(messages: dict[str, dict]) -> None:
    base = parse_json_messages(_encode(messages), "f")[0]
    combined = {"trace": messages["Trace.json"], "result": messages["Result.json"],
                "assets": [messages["Heads.json"]]}
    got = parse_bytes(json.dumps(combined).encode(), "body")
    assert got.equals(base) and got.meta.head_name == base.meta.head_name
    as_list = parse_bytes(json.dumps(list(messages.values())).encode(), "list")
    assert as_list.equals(base)
    with pytest.raises(IngestError, match="Trace message alone"):
        parse_bytes(json.dumps(messages["Trace.json"]).encode(), "t")
    with pytest.raises(IngestError, match="Heads message alone"):
        parse_bytes(json.dumps(messages["Heads.json"]).encode(), "h")
    with pytest.raises(IngestError, match="invalid JSON"):
        parse_bytes(json.dumps(combined).encode()[:-5], "cut")


def test_trace_channels_must_agree_on_their_result_id(messages: dict[str, dict]) -> None:
    trace = _payload(messages["Trace.json"])
    key = next(k for k in trace if k.endswith("IntensityTorqueTrace.StepResultId"))
    trace[key]["Value"] = 12345
    entries = {e.name: e for e in read_message_folder(_encode(messages), "folder")}
    assert "2 different StepResultIds" in entries["Trace.json"].error.problem
    assert entries["Result.json"].error is not None  # nothing left to join it to
