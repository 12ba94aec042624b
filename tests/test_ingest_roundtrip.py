"""Writers -> parsers give back the same trace; walking files and folders."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from appliance.errors import IngestError
from appliance.ingest import iter_inputs, parse_bytes, parse_file, parse_json_messages
from appliance.ingest.fixtures import sample_trace
from appliance.ingest.json_writer import write_json_messages
from appliance.ingest.setitec_writer import VARIANTS, write_setitec
from appliance.trace import Trace

HALF_QUANTUM = 5e-4  # the writers keep 3 decimals, as the controller does


def with_rpm(trace: Trace) -> Trace:
    return dataclasses.replace(trace, rpm=np.where(trace.step == 1, -3974.657, -998.416))


@pytest.mark.parametrize("separator", ["\t", ";"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_setitec_round_trip(variant: str, separator: str) -> None:
    original = sample_trace(60, seed=3)
    if variant == "v4":
        original = with_rpm(original)  # only v4 logs spindle speed per sample
    data = write_setitec(original, variant, separator)
    back = parse_bytes(data, "rt.xls")
    assert back.equals(original, atol=HALF_QUANTUM)
    assert back.rpm is None if variant != "v4" else back.rpm is not None
    meta, src = back.meta, original.meta
    assert meta.variant == variant and meta.file_version == int(variant[1:])
    assert "synthetic" not in meta.extra
    for name in ("cycle_date", "sample_rate_hz", "drill_serial", "head_name",
                 "head_global_counter", "head_local_counter", "program"):
        assert getattr(meta, name) == getattr(src, name), name
    # v4 has no 'Cycle OK' in its Results.
    assert meta.cycle_ok == (None if variant == "v4" else src.cycle_ok)


def test_values_are_written_with_three_decimals() -> None:
    trace = sample_trace(20)
    trace = dataclasses.replace(trace, depth_mm=trace.depth_mm + 0.00049,
                                torque_a=trace.torque_a + 0.0004)
    back = parse_bytes(write_setitec(trace, "v9"), "x")
    assert not back.equals(trace) and back.equals(trace, atol=HALF_QUANTUM)
    assert np.allclose(back.depth_mm, np.round(back.depth_mm, 3), atol=1e-12, rtol=0)


def test_writer_rejects_unknown_layouts() -> None:
    with pytest.raises(ValueError):
        write_setitec(sample_trace(5), "v10")
    with pytest.raises(ValueError):
        write_setitec(sample_trace(5), "v9", ",")


def test_json_round_trip() -> None:
    original = sample_trace(60, seed=5)
    messages = write_json_messages(original)
    assert {"Trace.json", "Result.json"} <= set(messages)
    [back] = parse_json_messages(messages, "rt")
    assert back.equals(original, atol=HALF_QUANTUM)
    meta, src = back.meta, original.meta
    assert meta.cycle_date == src.cycle_date + "Z"  # CreationTime: local time marked Z
    for name in ("sample_rate_hz", "drill_serial", "head_name", "head_global_counter",
                 "head_local_counter", "cycle_ok"):
        assert getattr(meta, name) == getattr(src, name), name
    trace_json = json.loads(messages["Trace.json"])
    assert trace_json["MessageType"] == "ua-data"


def test_json_round_trip_without_optional_arrays() -> None:
    bare = dataclasses.replace(sample_trace(30), power_w=None, torque_empty_a=None,
                               thrust_empty_a=None)
    bare = dataclasses.replace(bare, meta=dataclasses.replace(
        bare.meta, head_name=None, drill_serial=None, head_local_counter=None))
    messages = write_json_messages(bare)
    assert set(messages) == {"Trace.json", "Result.json"}
    [back] = parse_json_messages(messages, "rt")
    assert back.equals(bare, atol=HALF_QUANTUM) and back.power_w is None
    assert back.torque_empty_a is None


# --- walking --------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "inputs"
    (root / "rig-a").mkdir(parents=True)
    (root / "rig-b" / "hole-7").mkdir(parents=True)
    trace = sample_trace(30)
    (root / "rig-a" / "b.XLS").write_bytes(write_setitec(trace, "v9"))
    (root / "rig-a" / "a.xls").write_bytes(write_setitec(with_rpm(trace), "v4"))
    (root / "rig-a" / "broken.xls").write_bytes(b"\x00\x01garbage")
    (root / "rig-a" / "notes.txt").write_text("ignored")
    for name, data in write_json_messages(trace).items():
        (root / "rig-b" / "hole-7" / name).write_bytes(data)
    return root


def test_iter_inputs_walks_sorted_and_groups_messages(tree: Path) -> None:
    results = list(iter_inputs([tree]))
    names = [str(Path(r.source).relative_to(tree)) for r in results]
    assert names == ["rig-a/a.xls", "rig-a/b.XLS", "rig-a/broken.xls",
                     "rig-b/hole-7/Controllers.json", "rig-b/hole-7/CuttingTools.json",
                     "rig-b/hole-7/Heads.json", "rig-b/hole-7/Result.json",
                     "rig-b/hole-7/Trace.json"]
    by_name = dict(zip(names, results, strict=True))
    assert by_name["rig-a/a.xls"].trace.meta.variant == "v4"
    assert by_name["rig-a/a.xls"].group == "rig-a"
    broken = by_name["rig-a/broken.xls"]
    assert broken.trace is None and "not a Setitec log" in broken.error.problem
    hole = by_name["rig-b/hole-7/Trace.json"]
    assert hole.group == "hole-7" and hole.trace is not None
    assert hole.trace.meta.head_name == "17070141"  # from the Heads companion
    assert all(by_name[f"rig-b/hole-7/{n}"].companion
               for n in ("Heads.json", "Result.json", "Controllers.json"))


def test_explicit_files_are_always_tried(tree: Path) -> None:
    odd = tree / "rig-a" / "notes.txt"
    [result] = list(iter_inputs([odd]))
    assert result.error is not None and result.source == str(odd)
    [trace] = list(iter_inputs([tree / "rig-b" / "hole-7" / "Trace.json"]))
    assert trace.trace is not None  # joined with the Result next to it
    missing = list(iter_inputs([tree / "nope.xls"]))
    assert "no such file" in missing[0].error.problem


def test_parse_file(tree: Path) -> None:
    assert len(parse_file(tree / "rig-a" / "b.XLS")) == 60
    assert len(parse_file(tree / "rig-b" / "hole-7" / "Trace.json")) == 60
    with pytest.raises(IngestError, match="companion"):
        parse_file(tree / "rig-b" / "hole-7" / "Heads.json")
    with pytest.raises(IngestError, match="not a Setitec log"):
        parse_file(tree / "rig-a" / "broken.xls")
