"""Setitec parser: every real log in ../shared, and every malformation on hand-made files."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from appliance.errors import IngestError
from appliance.ingest import parse_bytes
from appliance.ingest.fixtures import sample_trace
from appliance.ingest.setitec import parse_setitec
from appliance.ingest.setitec_writer import write_setitec
from appliance.ingest.values import iso_date

# MANIFEST variants that the parser names differently (the separator is not a variant).
VARIANT_OF = {"v8-synth-semicolon": "v8-synth"}


def manifest(setitec_dir: Path) -> list[dict[str, str]]:
    with (setitec_dir / "MANIFEST.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def raw_rows(data: bytes) -> tuple[str, list[str], list[list[str]]]:
    """(separator, header names, sample rows) read with plain string splits, no parser code."""
    lines = data.decode("latin-1").replace("\r\n", "\n").split("\n")
    sep = next(";" if ln.count(";") > ln.count("\t") else "\t"
               for ln in lines if "\t" in ln or ";" in ln)
    start = next(i for i, ln in enumerate(lines) if "*** Datas" in ln)
    header = [h for h in lines[start + 1].split(sep) if h]
    rows = [ln.rstrip(sep).split(sep) for ln in lines[start + 2:] if ln.strip()]
    return sep, header, rows


def raw_value_after(data: bytes, key: str) -> str | None:
    """The value under `key` in the first key row naming it (the row right below)."""
    lines = data.decode("latin-1").split("\n")
    for i, line in enumerate(lines):
        sep = ";" if line.count(";") > line.count("\t") else "\t"
        keys = [k.strip() for k in line.split(sep)]
        if key in keys and i + 1 < len(lines):
            values = lines[i + 1].split(sep)
            idx = keys.index(key)
            return values[idx].strip() if idx < len(values) else None
    return None


def num(cell: str) -> float:
    return float(cell.strip().replace(",", "."))


def test_every_shared_log_parses_and_matches_its_raw_text(setitec_dir: Path) -> None:
    problems = []
    rows_seen = 0
    for entry in manifest(setitec_dir):
        data = (setitec_dir / entry["path"]).read_bytes()
        trace = parse_setitec(data, entry["path"])
        _, _, rows = raw_rows(data)
        n = len(rows)
        rows_seen += n
        if len(trace) != int(entry["rows"]) or len(trace) != n:
            problems.append(f"{entry['path']}: {len(trace)} samples, MANIFEST {entry['rows']}")
            continue
        if trace.meta.variant != VARIANT_OF.get(entry["variant"], entry["variant"]):
            problems.append(f"{entry['path']}: variant {trace.meta.variant}, "
                            f"MANIFEST {entry['variant']}")
        # The first 7 fields are the same columns in every layout (format doc section 6).
        for i in sorted({0, 1, n // 2, n - 1}):
            expected = [num(c) for c in rows[i][:7]]
            got = [-trace.depth_mm[i], trace.torque_a[i], trace.thrust_a[i],
                   trace.torque_empty_a[i], trace.thrust_empty_a[i], trace.step[i],
                   trace.stop_code[i]]
            if not np.allclose(got, expected, atol=1e-9, rtol=0):
                problems.append(f"{entry['path']} row {i}: {got} != {expected}")
        if trace.meta.content_hash == "" or len(trace.meta.content_hash) != 64:
            problems.append(f"{entry['path']}: content hash {trace.meta.content_hash!r}")
    assert not problems, "\n".join(problems[:20])
    assert rows_seen > 100_000


def test_metadata_matches_the_raw_key_rows(setitec_dir: Path) -> None:
    problems = []
    for entry in manifest(setitec_dir):
        data = (setitec_dir / entry["path"]).read_bytes()
        meta = parse_setitec(data, entry["path"]).meta
        head = raw_value_after(data, "Head Global Counter")
        local = raw_value_after(data, "Head Local Counter") or raw_value_after(
            data, "Head Local Counter 1")
        version = raw_value_after(data, "Version")
        checks = [
            ("head_global_counter", meta.head_global_counter, int(num(head))),
            ("head_local_counter", meta.head_local_counter, int(num(local))),
            ("file_version", meta.file_version, int(version)),
            ("head_name", meta.head_name, raw_value_after(data, "Head Name").replace(
                "\\u0000", "").strip("\x00 ") or None),
        ]
        for name, got, expected in checks:
            if got != expected:
                problems.append(f"{entry['path']}: {name} {got!r} != {expected!r}")
        date = raw_value_after(data, "Date")
        if meta.cycle_date is None or meta.cycle_date.replace("T", ":", 1).rstrip("Z") \
                != date.rstrip("Z").replace("T", ":", 1):
            problems.append(f"{entry['path']}: date {meta.cycle_date!r} from {date!r}")
        if date.startswith("1970") != (meta.extra.get("clock_not_set") == "true"):
            problems.append(f"{entry['path']}: 1970 date not flagged")
    assert not problems, "\n".join(problems[:20])


def test_program_keeps_only_active_steps(setitec_dir: Path) -> None:
    for entry in manifest(setitec_dir):
        data = (setitec_dir / entry["path"]).read_bytes()
        meta = parse_setitec(data, entry["path"]).meta
        lines = data.decode("latin-1").split("\n")
        start = next(i for i, ln in enumerate(lines) if "*** Program" in ln)
        sep = ";" if lines[start + 1].count(";") > lines[start + 1].count("\t") else "\t"
        active = []
        for line in lines[start + 2:]:
            fields = line.split(sep)
            if not line.strip("\t; ") or line.lstrip().startswith("***"):
                break
            if num(fields[1]) == 1:
                active.append((int(num(fields[0])), num(fields[2]), num(fields[3])))
        got = [(s.step, s.travel_mm, s.rpm) for s in meta.program]
        assert got == active, entry["path"]


def test_final_stop_codes_named_in_the_manifest(setitec_dir: Path) -> None:
    checked = 0
    for entry in manifest(setitec_dir):
        match = re.search(r"final stop code (\d+)", entry["notes"])
        if match:
            trace = parse_setitec((setitec_dir / entry["path"]).read_bytes(), entry["path"])
            assert trace.stop_code[-1] == int(match.group(1)), entry["path"]
            checked += 1
    assert checked >= 5


def test_v11_and_13_name_headers_map_power_by_rule(setitec_dir: Path) -> None:
    for path in ("mqtt-examples/23120040_23120040_ST_2412_60.xls",
                 "edge-cases/MQTT_to_XLS_17070141_798.xls"):
        data = (setitec_dir / path).read_bytes()
        _, header, rows = raw_rows(data)
        assert len(rows[0]) == 9 and len(header) > 9
        trace = parse_setitec(data, path)
        # Field 8 is power in the v9 layout; by position it would land under 'Mem Torque min'.
        assert trace.power_w is not None
        assert np.allclose(trace.power_w[:50], [num(r[7]) for r in rows[:50]], atol=1e-9)
        assert "header_fix" in trace.meta.extra


def test_synthesized_files_are_recognised_by_content(setitec_dir: Path) -> None:
    real = parse_setitec((setitec_dir / "mdb/17070141_17070141_ST_798_100.xls").read_bytes(),
                         "real")
    synth = parse_setitec(
        (setitec_dir / "edge-cases/MQTT_to_XLS_17070141_798a.xls").read_bytes(), "synth")
    assert real.meta.variant == "v9" and "synthetic" not in real.meta.extra
    assert synth.meta.variant == "v8-synth" and "synthetic" in synth.meta.extra
    # Same samples under foreign metadata (format doc section 7).
    assert real.equals(synth)


def test_byte_identical_copies_share_a_content_hash(setitec_dir: Path) -> None:
    a = parse_setitec((setitec_dir / "edge-cases/V4_069.xls").read_bytes(), "a")
    b = parse_setitec((setitec_dir / "edge-cases/V4_070.xls").read_bytes(), "b")
    c = parse_setitec((setitec_dir / "edge-cases/V4_107.xls").read_bytes(), "c")
    assert a.meta.content_hash == b.meta.content_hash != c.meta.content_hash


# --- hand-made inputs (no ../shared needed) ---------------------------------------------


@pytest.fixture
def v9_text() -> str:
    return write_setitec(sample_trace(30), "v9").decode("latin-1")


def _line_of(text: str, needle: str) -> int:
    return next(i + 1 for i, ln in enumerate(text.split("\n")) if needle in ln)


def _error(data: bytes) -> IngestError:
    with pytest.raises(IngestError) as info:
        parse_setitec(data, "made.xls")
    assert info.value.source == "made.xls"
    assert not info.value.problem.startswith("unexpected")
    return info.value


def test_empty_blank_and_binary_inputs() -> None:
    assert "empty" in _error(b"").problem
    assert "blank" in _error(b"\n\n\t\t\n").problem
    err = _error(bytes(range(256)) * 4)
    assert "not a Setitec log" in err.problem and err.where == "line 1"


def test_missing_datas_section(v9_text: str) -> None:
    head = v9_text[: v9_text.index("*** Datas")]
    assert "Datas" in _error(head.encode("latin-1")).problem


def test_zero_rows_and_missing_position(v9_text: str) -> None:
    lines = v9_text.split("\n")
    header_at = _line_of(v9_text, "Position (mm)")
    no_rows = "\n".join(lines[:header_at]) + "\n"
    assert "no sample rows" in _error(no_rows.encode("latin-1")).problem
    renamed = v9_text.replace("Position (mm)", "Pos (mm)")
    err = _error(renamed.encode("latin-1"))
    assert "'Position (mm)'" in err.problem and err.where == f"line {header_at}"


def test_non_numeric_cell_names_line_and_field(v9_text: str) -> None:
    lines = v9_text.split("\n")
    target = _line_of(v9_text, "Position (mm)") + 10  # 1-based line of a sample row
    fields = lines[target - 1].split("\t")
    fields[2] = "1,2x"
    lines[target - 1] = "\t".join(fields)
    err = _error("\n".join(lines).encode("latin-1"))
    assert err.where == f"line {target}, field 3" and "'1,2x'" in err.problem


def test_truncated_row_and_widths_after_padding(v9_text: str) -> None:
    cut = v9_text.rstrip("\n")
    cut = cut[: cut.rindex("\t")]  # the last row loses its last field
    err = _error(cut.encode("latin-1"))
    assert "8 fields" in err.problem and err.where == f"line {cut.count(chr(10)) + 1}"
    lines = v9_text.split("\n")
    target = _line_of(v9_text, "Position (mm)") + 5
    padded = lines.copy()
    padded[target - 1] += "\t\t\t"  # padding is stripped, not counted
    assert len(parse_setitec("\n".join(padded).encode("latin-1"), "p")) == 30 * 2
    extra = lines.copy()
    extra[target - 1] += "\t1,000"
    assert _error("\n".join(extra).encode("latin-1")).where == f"line {target}"


def test_crlf_and_semicolons_parse_the_same() -> None:
    trace = sample_trace(30)
    tab = parse_setitec(write_setitec(trace, "v9"), "a")
    crlf = parse_setitec(write_setitec(trace, "v9").replace(b"\n", b"\r\n"), "b")
    semi = parse_setitec(write_setitec(trace, "v9", ";"), "c")
    assert tab.equals(crlf) and tab.equals(semi)
    assert semi.meta.extra["separator"] == "semicolon"


def test_without_the_bare_tokenizer_read_csv_reads_the_same(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The sample block is read by pandas' C tokenizer alone where this pandas has it; a
    pandas without it (or whose tokenizer takes other arguments) gets read_csv: same trace,
    same errors."""
    import appliance.ingest.setitec as setitec

    trace = sample_trace(40)
    logs = [write_setitec(trace, "v9"), write_setitec(trace, "v9", ";")]
    bad = logs[0].decode("latin-1").replace("\n-0,", "\nx-0,", 1).encode("latin-1")
    fast = [parse_setitec(data, "a") for data in logs]
    fast_error = _error(bad)
    monkeypatch.setattr(setitec, "_TextReader", None)
    for data, seen in zip(logs, fast, strict=True):
        assert parse_setitec(data, "a").equals(seen)
    slow_error = _error(bad)
    assert (slow_error.where, slow_error.problem) == (fast_error.where, fast_error.problem)

    def other_signature(*args: object, **kwargs: object) -> None:
        raise TypeError("__cinit__() got an unexpected keyword argument 'usecols'")

    monkeypatch.setattr(setitec, "_TextReader", other_signature)
    assert parse_setitec(logs[0], "a").equals(fast[0])


def test_header_over_nine_fields_rule(v9_text: str) -> None:
    header = v9_text.split("\n")[_line_of(v9_text, "Position (mm)") - 1]
    thirteen = ("Position (mm)\tI Torque (A)\tI Thrust (A)\tI Torque Empty (A)\t"
                "I Thrust Empty (A)\tStep (nb)\tStop code\tMem Torque min (A)\t"
                "Mem Thrust min (A)\tRotation Speed (rpm)\tFeed Speed (mm/s)\t"
                "Torque Power (W)\tGap Max (mm)")
    base = parse_setitec(v9_text.encode("latin-1"), "a")
    fixed = parse_setitec(v9_text.replace(header, thirteen).encode("latin-1"), "b")
    assert fixed.equals(base) and fixed.rpm is None
    eight = "\t".join(header.split("\t")[:8])
    err = _error(v9_text.replace(header, eight).encode("latin-1"))
    assert "8 column names" in err.problem and "9 fields" in err.problem


def test_bare_datas_table_is_a_trace(v9_text: str) -> None:
    table = v9_text[v9_text.index("Position (mm)"):].replace(",", ".").replace("\t", ";")
    trace = parse_bytes(table.encode("latin-1"), "curve.json")
    assert trace.meta.variant == "datas-table" and len(trace) == 60
    assert trace.equals(parse_setitec(v9_text.encode("latin-1"), "x"))


def test_whole_number_columns_are_checked(v9_text: str) -> None:
    lines = v9_text.split("\n")
    target = _line_of(v9_text, "Position (mm)") + 3
    fields = lines[target - 1].split("\t")
    fields[5] = "1,500"  # Step (nb) between two steps
    lines[target - 1] = "\t".join(fields)
    err = _error("\n".join(lines).encode("latin-1"))
    assert "Step (nb)" in err.problem and err.where == "sample 3"


def test_dates() -> None:
    assert iso_date("2021-11-19:11:10:26") == ("2021-11-19T11:10:26", False)
    assert iso_date("2024-05-08T17:51:30Z") == ("2024-05-08T17:51:30Z", False)
    assert iso_date("1970-01-01:06:38:39") == ("1970-01-01T06:38:39", True)
    assert iso_date("1733339682") == ("2024-12-04T19:14:42Z", False)
    assert iso_date("yesterday") == (None, False)


def test_inf_feed_and_dot_metadata_values() -> None:
    text = write_setitec(sample_trace(20), "v4").decode("latin-1")
    # An active zero-feed step logs Inf mm/rev; v4 metadata uses dots.
    assert "1.000" in text
    lines = text.split("\n")
    at = _line_of(text, "Step Nb") + 1
    fields = lines[at - 1].split("\t")
    fields[5] = "Inf"
    lines[at - 1] = "\t".join(fields)
    trace = parse_setitec("\n".join(lines).encode("latin-1"), "inf")
    assert trace.meta.program[0].feed_mm_rev is None
    assert trace.meta.program[1].feed_mm_rev == pytest.approx(0.045)


def test_a_row_of_only_blank_fields_after_a_key_row_is_no_continuation():
    # Found by the fuzz test: a line of control characters only, after a blank line, used
    # to raise IndexError where the v4 key-row continuation is looked for.
    from appliance.ingest.setitec import read_sections

    out = read_sections(["*** Cycle Parameters ***", "A\tB", "", "\x0b"], "\t")
    assert out.kv["Cycle Parameters"] == {"A": "", "B": ""}
