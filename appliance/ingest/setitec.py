"""Setitec hole logs (``.xls`` that are really Latin-1 text) -> Trace.

The format, its variants and malformations are described in
../shared/docs/setitec-format.md; the comments below cite its rules rather than repeat them.
parse_setitec raises IngestError and nothing else.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from appliance.errors import IngestError
from appliance.ingest.values import (
    clean_text,
    iso_date,
    to_opt_bool,
    to_opt_float,
    to_opt_int,
)
from appliance.trace import ProgramStep, Trace, TraceMeta

try:  # pandas' C tokenizer on its own (see _tokenized)
    from pandas._libs.parsers import TextReader as _TextReader
except ImportError:  # pragma: no cover - a pandas that moved it: read_csv still reads
    _TextReader = None

POSITION = "Position (mm)"
TORQUE = "I Torque (A)"
THRUST = "I Thrust (A)"
TORQUE_EMPTY = "I Torque Empty (A)"
THRUST_EMPTY = "I Thrust Empty (A)"
STEP = "Step (nb)"
STOP_CODE = "Stop code"
RPM = "Rotation Speed (rpm)"
POWER_NAMES = ("Torque Power (W)", "Power (W)")

# Datas layouts by variant (format doc section 6).
V4_COLUMNS: tuple[str, ...] = (
    POSITION, TORQUE, THRUST, TORQUE_EMPTY, THRUST_EMPTY, STEP, STOP_CODE,
    "Mem Torque min (A)", "Mem Thrust min (A)", RPM, "Feed Speed (mm/s)", "Torque Power (W)",
)
V7_COLUMNS: tuple[str, ...] = V4_COLUMNS[:9] + ("Torque Power (W)", "Gap Length (mm)")
V9_COLUMNS: tuple[str, ...] = V4_COLUMNS[:7] + ("Torque Power (W)", "Gap Length (mm)")
# v11 writes 'Gap Length (mm)' twice over 9 fields; dropping the repeat gives these 9 names.
V11_HEADER: tuple[str, ...] = V4_COLUMNS[:7] + ("Power (W)", "Gap Length (mm)", "Gap Length (mm)")

KV_SECTIONS = ("General Infos", "Control Box Datas", "Motor Datas", "Head Datas", "Pset",
               "Cycle Parameters", "External Infos", "Results")
TABLE_SECTIONS = ("Program", "Step Results")

_SECTION = re.compile(r"^\s*\*\*\*\s*(.*?)\s*\*\*\*\s*$")
_DATAS_LINE = re.compile(r"^[ \t;]*\*\*\*[ \t]*Datas[ \t]*\*\*\*[^\n]*$", re.MULTILINE)
# v8-synth Program headers lose a separator: "Stroke Limit (A)Thrust Limit (A)".
_GLUED_KEYS = re.compile(r"(?<=\))(?=[A-Z])")
_EMPTY_TOLERANCE_A = 0.0015  # Step Results no-load amps vs Datas Empty columns (3 decimals)


@dataclass
class LogSections:
    """A log's metadata: key/value sections and tables, every value still a raw string."""

    kv: dict[str, dict[str, str]] = field(default_factory=dict)
    tables: dict[str, list[tuple[str, dict[str, str]]]] = field(default_factory=dict)
    where: dict[tuple[str, str], str] = field(default_factory=dict)
    joined_key_rows: set[str] = field(default_factory=set)

    def get(self, section: str, *keys: str) -> str | None:
        """The first of `keys` present in `section` (names changed between versions)."""
        values = self.kv.get(section, {})
        for key in keys:
            if key in values:
                return values[key]
        return None

    def loc(self, section: str, *keys: str) -> str:
        for key in keys:
            if (section, key) in self.where:
                return self.where[(section, key)]
        return f"{section} {keys[0]!r}"


@dataclass
class DatasTable:
    columns: list[str]
    values: np.ndarray  # float64, one row per sample
    decimal: str  # ',' or '.' as written in the first data row
    first_line: int  # line number of the first sample (1-based), for messages
    header_fix: str | None = None


def parse_setitec(data: bytes, source: str) -> Trace:
    """Parse one Setitec log (any variant, or a bare Datas table) into a Trace."""
    try:
        return _parse(data, source)
    except IngestError:
        raise
    except Exception as exc:  # a bug in this module: still reported against the file
        raise IngestError(source, f"unexpected {type(exc).__name__} while parsing: {exc}") from exc


def _parse(data: bytes, source: str) -> Trace:
    if not data:
        raise IngestError(source, "empty input (0 bytes)")
    # A BOM would hide the first section marker; the hash still covers the raw bytes.
    text = data.decode("latin-1").removeprefix("\xef\xbb\xbf")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    stripped = text.lstrip("\n")
    if not stripped.strip("\t ;\n"):
        raise IngestError(source, "input holds only blank lines")
    skipped = len(text) - len(stripped)
    first_line_no = text.count("\n", 0, skipped) + 1
    first = stripped.split("\n", 1)[0]
    sep = _separator(stripped)
    first_field = first.split(sep)[0].strip()
    content_hash = hashlib.sha256(data).hexdigest()

    if first_field == POSITION:
        # A Datas table without metadata (MQTT_Curve_Info_*.json): the trace is real, so keep it.
        table = read_datas(stripped, sep, source, first_line_no)
        meta = TraceMeta(source=source, content_hash=content_hash, variant="datas-table",
                         extra=_table_extra(table, sep))
        return trace_from_table(table, meta, source)

    match = _SECTION.match(first_field)
    if not match:
        raise IngestError(
            source,
            f"not a Setitec log: expected '*** General Infos ***' or a Datas header, "
            f"found {ascii(first[:40])}",
            f"line {first_line_no}",
        )
    datas = _DATAS_LINE.search(text)
    if datas is None:
        raise IngestError(source, "no '*** Datas ***' section (file truncated or not a log)",
                          f"after line {text.count(chr(10)) + 1}")
    datas_line_no = text.count("\n", 0, datas.start()) + 1
    sections = read_sections(text[: datas.start()].split("\n"), sep)
    body_start = datas.end() + 1
    table = read_datas(text[body_start:], sep, source, datas_line_no + 1)
    meta = build_meta(sections, table, source, content_hash, sep,
                      replacement_char=b"\xef\xbf\xbd" in data)
    return trace_from_table(table, meta, source)


def _separator(text: str) -> str:
    """TAB or ';' from the first line that holds either (the first line, in the logs)."""
    for line in text[:8192].split("\n")[:8]:
        tabs, semicolons = line.count("\t"), line.count(";")
        if tabs or semicolons:
            return ";" if semicolons > tabs else "\t"
    return "\t"


def _fields(line: str, sep: str) -> list[str]:
    fields = line.split(sep)
    while fields and not fields[-1].strip():
        fields.pop()
    return fields


def read_sections(lines: list[str], sep: str) -> LogSections:
    """Group metadata lines into sections and pair each key row with its value row."""
    out = LogSections()
    rows_by_section: dict[str, list[tuple[int, list[str]]]] = {}
    current: str | None = None
    for index, line in enumerate(lines):
        candidate = line.strip(" \t;")
        if not candidate:
            continue
        fields = _fields(line, sep)
        match = _SECTION.match(candidate) if candidate.startswith("***") else None
        if match:
            current = match.group(1).strip()
            rows_by_section.setdefault(current, [])
            continue
        if current is not None:
            rows_by_section[current].append((index + 1, fields))
    for name, rows in rows_by_section.items():
        if name in TABLE_SECTIONS:
            out.tables[name] = _read_table(rows)
        else:
            out.kv[name] = _read_key_values(name, rows, out)
    return out


def _read_key_values(name: str, rows: list[tuple[int, list[str]]],
                     out: LogSections) -> dict[str, str]:
    values: dict[str, str] = {}
    i = 0
    while i < len(rows):
        line_no, keys = rows[i][0], [k.strip() for k in rows[i][1]]
        j = i + 1
        # v4 Control Box: the key row breaks, blanks follow, then a row repeating the last key.
        while (j < len(rows) and len(keys) > 1 and rows[j][0] > rows[j - 1][0] + 1
               and rows[j][1] and rows[j][1][0].strip() == keys[-1]):
            keys.extend(k.strip() for k in rows[j][1][1:])
            out.joined_key_rows.add(name)
            j += 1
        # A value row directly follows its key row; a key row followed by a blank line
        # (Cycle Parameters 'Comment') has no values.
        row_values: list[str] = []
        value_line = line_no
        if j < len(rows) and rows[j][0] == rows[j - 1][0] + 1:
            row_values = rows[j][1]
            value_line = rows[j][0]
            j += 1
        for n, key in enumerate(keys):
            if key and key not in values:
                values[key] = row_values[n] if n < len(row_values) else ""
                out.where[(name, key)] = f"line {value_line}, {name} {key!r}"
        i = j
    return values


def _read_table(rows: list[tuple[int, list[str]]]) -> list[tuple[str, dict[str, str]]]:
    if not rows:
        return []
    header: list[str] = []
    for key in rows[0][1]:
        header.extend(part.strip() for part in _GLUED_KEYS.split(key))
    return [(f"line {line_no}", dict(zip(header, values, strict=False)))
            for line_no, values in rows[1:]]


def read_datas(text: str, sep: str, source: str, header_line_no: int) -> DatasTable:
    """The Datas header line and all sample rows of `text`, parsed in one vectorised pass."""
    header_end = text.find("\n")
    header_line = text if header_end < 0 else text[:header_end]
    names = [n.strip() for n in _fields(header_line, sep)]
    if not names:
        raise IngestError(source, "the Datas section has no header row", f"line {header_line_no}")
    body = "" if header_end < 0 else text[header_end + 1:]
    first_line_no = header_line_no + 1
    first_row_end = body.find("\n")
    first_row = body if first_row_end < 0 else body[:first_row_end]
    if not body.strip("\n\t ;"):
        raise IngestError(source, "the Datas section has no sample rows", f"line {first_line_no}")
    if not first_row.strip("\t ;"):
        raise IngestError(source, "blank line where the first sample row should be",
                          f"line {first_line_no}")
    width = len(_fields(first_row, sep))
    decimal = "," if "," in first_row else "."
    values = _fast_rows(body, sep, decimal, width)
    if values is None:
        values = _checked_rows(body, sep, width, source, first_line_no)
    columns, header_fix = resolve_columns(names, width, source, header_line_no)
    return DatasTable(columns, values, decimal, first_line_no, header_fix)


def _fast_rows(body: str, sep: str, decimal: str, width: int) -> np.ndarray | None:
    """The C CSV reader on the whole Datas block; None when anything is off (then diagnose)."""
    if body.count(sep, 0, body.find("\n") if "\n" in body else len(body)) != width - 1:
        return None  # padded rows: the slow path strips them
    try:
        # Bytes, not a StringIO: pandas would re-encode the str, which costs a third.
        values = _tokenized(body.encode("latin-1"), sep, decimal)
    except Exception:  # any tokenising or conversion failure is diagnosed row by row
        return None
    if values.ndim != 2 or values.shape[1] != width or not np.isfinite(values).all():
        return None
    return values


def _tokenized(data: bytes, sep: str, decimal: str) -> np.ndarray:
    """Every field of the block as float64 [rows, fields], by pandas' C tokenizer.

    read_csv runs that tokenizer, then spends as long again building a DataFrame and its
    index around the columns (a typical log: 1.4 ms in read_csv against 0.65 ms in the
    tokenizer alone, ~7 % of an estimate's CPU). The tokenizer's class is pandas-internal:
    a pandas whose class is gone or takes other arguments gets read_csv, same numbers."""
    if _TextReader is not None:
        try:
            reader = _TextReader(io.BytesIO(data), delimiter=sep, header=None,
                                 decimal=decimal.encode("ascii"), dtype=np.dtype(np.float64),
                                 na_filter=False, na_values={}, true_values=None,
                                 quoting=csv.QUOTE_NONE, skip_blank_lines=True, usecols=None)
        except TypeError:
            pass
        else:
            columns = reader.read()
            return np.column_stack([columns[i] for i in range(len(columns))])
    frame = pd.read_csv(io.BytesIO(data), sep=sep, header=None, engine="c",
                        encoding="latin-1", decimal=decimal, dtype=np.float64,
                        na_filter=False, quoting=csv.QUOTE_NONE, skip_blank_lines=True)
    values: np.ndarray = frame.to_numpy(dtype=np.float64)
    return values


def _checked_rows(body: str, sep: str, width: int, source: str,
                  first_line_no: int) -> np.ndarray:
    """Row-by-row parse that names the first bad line; also accepts mixed decimal marks."""
    rows: list[list[float]] = []
    for offset, line in enumerate(body.split("\n")):
        line_no = first_line_no + offset
        fields = _fields(line, sep)
        if not fields:
            continue
        if len(fields) != width:
            raise IngestError(
                source, f"row has {len(fields)} fields, the first sample row has {width}",
                f"line {line_no}")
        row = []
        for col, cell in enumerate(fields):
            text = cell.strip().replace(",", ".")
            try:
                number = float(text)
            except ValueError:
                raise IngestError(source, f"{ascii(cell.strip()[:30])} is not a number",
                                  f"line {line_no}, field {col + 1}") from None
            if not math.isfinite(number):
                raise IngestError(source, f"non-finite value {cell.strip()!r}",
                                  f"line {line_no}, field {col + 1}")
            row.append(number)
        rows.append(row)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), width)


def resolve_columns(names: list[str], width: int, source: str,
                    header_line_no: int) -> tuple[list[str], str | None]:
    """Map header names onto the row fields (format doc section 6, header/field mismatch)."""
    unique = list(dict.fromkeys(names))
    fix = None
    if len(unique) != len(names):
        fix = f"dropped repeated header names ({len(names)} names -> {len(unique)})"
    if len(unique) == width:
        return unique, fix
    if width == len(V9_COLUMNS) and len(unique) > width:
        return list(V9_COLUMNS), (f"header lists {len(unique)} names but rows hold 9 fields: "
                                  "v9 layout used")
    raise IngestError(source, f"Datas header has {len(unique)} column names but rows have "
                              f"{width} fields", f"line {header_line_no}")


def _column(table: DatasTable, names: tuple[str, ...], source: str,
            required: bool = True) -> np.ndarray | None:
    for name in names:
        if name in table.columns:
            return table.values[:, table.columns.index(name)]
    if required:
        raise IngestError(source, f"the Datas header lacks the {names[0]!r} column",
                          f"line {table.first_line - 1}")
    return None


def _integral(values: np.ndarray, name: str, table: DatasTable, source: str,
              dtype: type) -> np.ndarray:
    rounded = np.rint(values)
    bad = np.flatnonzero((np.abs(values - rounded) > 1e-6) | (np.abs(values) >= 2**31))
    if bad.size:
        raise IngestError(source, f"{name} must be a whole number below 2^31, got "
                                  f"{values[bad[0]]!r}", f"sample {bad[0] + 1}")
    whole: np.ndarray = rounded.astype(dtype)
    return whole


def trace_from_table(table: DatasTable, meta: TraceMeta, source: str) -> Trace:
    position = _column(table, (POSITION,), source)
    assert position is not None
    torque = _column(table, (TORQUE,), source)
    thrust = _column(table, (THRUST,), source)
    step = _column(table, (STEP,), source)
    stop = _column(table, (STOP_CODE,), source)
    return Trace(
        meta=meta,
        depth_mm=-position,  # Position is negative into the work (depth-points.md)
        torque_a=np.ascontiguousarray(torque),
        thrust_a=np.ascontiguousarray(thrust),
        step=_integral(step, STEP, table, source, np.int32),  # type: ignore[arg-type]
        stop_code=_integral(stop, STOP_CODE, table, source, np.int64),  # type: ignore[arg-type]
        torque_empty_a=_copy(_column(table, (TORQUE_EMPTY,), source, required=False)),
        thrust_empty_a=_copy(_column(table, (THRUST_EMPTY,), source, required=False)),
        power_w=_copy(_column(table, POWER_NAMES, source, required=False)),
        rpm=_copy(_column(table, (RPM,), source, required=False)),
    )


def _copy(values: np.ndarray | None) -> np.ndarray | None:
    return None if values is None else np.ascontiguousarray(values)


def _table_extra(table: DatasTable, sep: str) -> dict[str, str]:
    extra = {"separator": "semicolon" if sep == ";" else "tab",
             "decimal": "comma" if table.decimal == "," else "dot"}
    if table.header_fix:
        extra["header_fix"] = table.header_fix
    return extra


def build_meta(sections: LogSections, table: DatasTable | None, source: str,
               content_hash: str, sep: str = "\t", replacement_char: bool = False,
               variant: str | None = None) -> TraceMeta:
    """TraceMeta from a log's sections (text logs and raw.json XLS dumps alike)."""
    gen = "General Infos"
    version = to_opt_int(sections.get(gen, "Version"), source, sections.loc(gen, "Version"),
                         "Version")
    if version is None:
        raise IngestError(source, "General Infos lacks the file Version",
                          sections.loc(gen, "Version"))
    raw_date = sections.get(gen, "Date")
    cycle_date, clock_not_set = iso_date(raw_date)
    rate = to_opt_float(sections.get(gen, "Sample Rate (Hz)"), source,
                        sections.loc(gen, "Sample Rate (Hz)"), "Sample Rate (Hz)")
    if rate is not None and not (math.isfinite(rate) and rate > 0):
        raise IngestError(source, f"Sample Rate (Hz) must be positive, got {rate}",
                          sections.loc(gen, "Sample Rate (Hz)"))
    extra = _table_extra(table, sep) if table is not None else {}
    if clock_not_set:
        extra["clock_not_set"] = "true"  # 1970 date: the controller clock was never set
    if raw_date and cycle_date is None:
        extra["date_unparsed"] = clean_text(raw_date)
    for key, section, names in (
        ("drilling_cycle_id", gen, ("Drilling Cycle ID",)),
        ("box_name", "Control Box Datas", ("BOX Name",)),
        ("motor_serial", "Motor Datas", ("Motor SN",)),
        ("head_tag_uid", "Head Datas", ("Head TAG UID",)),
        ("pset", "Pset", ("Pset n°", "Pset nï¿½", "Pset Nb.")),
        ("results_distance_mm", "Results", ("Distance (mm)",)),
        ("cycle_time_s", "Results", ("Cycle Time (s)",)),
    ):
        value = clean_text(sections.get(section, *names))
        if value:
            extra[key] = value

    # A JSON dump (variant given) writes ISO dates and dots by nature: only the Step
    # Results cross-check applies to it.
    reasons = _synthetic_reasons(sections, table, raw_date if variant is None else None,
                                 source)
    if variant is None:
        variant = f"v{version}"
        if version == 4 and (replacement_char or "Control Box Datas" not in
                             sections.joined_key_rows):
            variant = "v4-resaved"  # one-line Control Box key row / U+FFFD: re-saved by a tool
        if reasons:
            variant = f"v{version}-synth"
    if reasons:
        extra["synthetic"] = "; ".join(reasons)

    head = "Head Datas"
    return TraceMeta(
        source=source,
        content_hash=content_hash,
        variant=variant,
        file_version=version,
        cycle_date=cycle_date,
        sample_rate_hz=rate if rate is not None else 100.0,
        drill_serial=clean_text(sections.get("Control Box Datas", "BOX SN")) or None,
        head_name=clean_text(sections.get(head, "Head Name")) or None,
        head_global_counter=to_opt_int(sections.get(head, "Head Global Counter"), source,
                                       sections.loc(head, "Head Global Counter"),
                                       "Head Global Counter"),
        head_local_counter=to_opt_int(
            sections.get(head, "Head Local Counter", "Head Local Counter 1"), source,
            sections.loc(head, "Head Local Counter", "Head Local Counter 1"),
            "Head Local Counter"),
        program=read_program(sections, source),
        cycle_ok=to_opt_bool(sections.get("Results", "Cycle OK"), source,
                             sections.loc("Results", "Cycle OK"), "Cycle OK"),
        extra=extra,
    )


def read_program(sections: LogSections, source: str) -> tuple[ProgramStep, ...]:
    """Active Program steps (Step On/Off = 1); travel is DEP (v4, v7) or Stroke (v8+)."""
    steps = []
    for where, row in sections.tables.get("Program", []):
        def num(*names: str, row: dict[str, str] = row, where: str = where) -> float | None:
            for name in names:
                if name in row:
                    return to_opt_float(row[name], source, where, name)
            return None

        on = num("Step On/Off")
        if on is None or on != 1:
            continue
        number = to_opt_int(row.get("Step Nb"), source, where, "Step Nb")
        travel = num("DEP (mm)", "Stroke (mm)")
        rpm = num("RPM")
        feed = num("AV (mm/s)", "Feed (mm/s)")
        if number is None or travel is None or rpm is None or feed is None:
            raise IngestError(source, "an active Program step lacks Step Nb, travel, RPM or "
                                      "feed (mm/s)", where)
        if not all(math.isfinite(v) for v in (travel, rpm, feed)):
            raise IngestError(source, "an active Program step has a non-finite travel, RPM "
                                      "or feed", where)
        per_rev = num("AV (mm/tr)", "Feed (mm/tr)")
        steps.append(ProgramStep(
            step=number, travel_mm=travel, rpm=rpm, feed_mm_s=feed,
            feed_mm_rev=per_rev if per_rev is not None and math.isfinite(per_rev) else None,
            torque_max_a=num("Torque Max (A)"), thrust_max_a=num("Thrust Max (A)"),
        ))
    return tuple(steps)


def _synthetic_reasons(sections: LogSections, table: DatasTable | None,
                       raw_date: str | None, source: str) -> list[str]:
    """Why the metadata looks foreign to the trace (MQTT_to_XLS_* files, format doc 7)."""
    reasons = []
    if raw_date and clean_text(raw_date).endswith("Z"):
        reasons.append("ISO Z date: controllers log local time")
    declared = clean_text(sections.get("General Infos", "Decimal Separator separator",
                                       "Decimal Separator")).lower()
    if table is not None and declared == "comma" and table.decimal == ".":
        reasons.append("Datas written with dots although the log declares comma decimals")
    if table is not None and sections.tables.get("Step Results") and STEP in table.columns \
            and TORQUE_EMPTY in table.columns:
        steps = table.values[:, table.columns.index(STEP)]
        empty = table.values[:, table.columns.index(TORQUE_EMPTY)]
        logged: set[int] = set()
        mismatch = None
        for where, row in sections.tables["Step Results"]:
            number = to_opt_int(row.get("Step Number"), source, where, "Step Number")
            no_load = to_opt_float(row.get("M1 No Load Amp"), source, where, "M1 No Load Amp")
            if number is None:
                continue
            logged.add(number)
            in_step = empty[steps == number]
            if mismatch is None and no_load is not None and in_step.size \
                    and np.abs(in_step - no_load).max() > _EMPTY_TOLERANCE_A:
                mismatch = (f"Step Results no-load torque of step {number} ({no_load} A) "
                            f"differs from the Datas ({in_step[0]} A)")
        if mismatch:
            reasons.append(mismatch)
        whole = steps[(steps == np.rint(steps)) & (np.abs(steps) < 2**31)]
        missing = sorted(set(np.unique(whole).astype(int).tolist()) - logged)
        if missing:
            reasons.append(f"Datas steps {missing} have no Step Results row")
    return reasons
