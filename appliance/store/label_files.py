"""Label spreadsheets (CSV or XLSX) in the layout of shared/data/setitec/labels.csv.

Columns: path, entry_mm, transition_mm, exit_mm, method, confidence, notes (an optional
hole_id column may be used instead of path). A row names its hole by file name, by path
relative to an ingest folder, or by hole id; an empty cell (or `none`) is an absent point,
and `nan` is refused. Import is
row by row: a bad row is reported with its row number and reason, the good rows are
still imported, and a row identical to the hole's current label is left as it is.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import ValidationError
from appliance.points import POINT_NAMES, DepthPoints
from appliance.records import Label
from appliance.store.facade import Store
from appliance.store.labels import points_of

COLUMNS = ("path", "entry_mm", "transition_mm", "exit_mm", "method", "confidence", "notes")
POINT_COLUMNS = tuple(f"{n}_mm" for n in POINT_NAMES)
DETAIL_COLUMNS = ("method", "confidence", "notes")
SUFFIXES = (".csv", ".xlsx")
# an absent point; "nan" is not one: a spreadsheet writes it for a failed formula or a lost
# value as well as for an empty cell, and a lost value stored as "absent" is a wrong label
_NULL_WORDS = {"", "none", "null", "-"}
# How an origin is shown in the method column when the label carries no method of its own.
_METHOD_OF_ORIGIN = {"operator": "manual", "auto": "auto", "import": "import"}


@dataclass
class ImportReport:
    imported: list[dict[str, Any]] = field(default_factory=list)  # row, key, hole_id, label_id
    unchanged: list[dict[str, Any]] = field(default_factory=list)  # row, key, hole_id
    rejected: list[dict[str, Any]] = field(default_factory=list)  # row, key, error

    def as_json(self) -> dict[str, list[dict[str, Any]]]:
        return {"imported": self.imported, "unchanged": self.unchanged,
                "rejected": self.rejected}


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValidationError(f"{path}: labels must be a .csv or .xlsx file, not {suffix!r}")
    return suffix


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(spreadsheet row number, {column: cell}) for each non-empty data row."""
    path = Path(path)
    suffix = _check_suffix(path)
    if not path.is_file():
        raise ValidationError(f"{path}: no such file")
    table = _read_csv(path) if suffix == ".csv" else _read_xlsx(path)
    if not table:
        raise ValidationError(f"{path}: the file is empty (expected a header row)")
    header = [str(c).strip().lower() if c is not None else "" for c in table[0]]
    if "path" not in header and "hole_id" not in header:
        raise ValidationError(f"{path}: row 1 has no 'path' (or 'hole_id') column")
    missing = [c for c in POINT_COLUMNS if c not in header]
    if missing:
        raise ValidationError(f"{path}: row 1 lacks the column(s) {', '.join(missing)}")
    out = []
    for number, cells in enumerate(table[1:], start=2):
        if all(c is None or str(c).strip() == "" for c in cells):
            continue
        row = {name: (cells[i] if i < len(cells) else None) for i, name in enumerate(header)
               if name}
        out.append((number, row))
    return out


def _read_csv(path: Path) -> list[list[Any]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return [list(r) for r in csv.reader(fh)]
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise ValidationError(f"{path}: unreadable CSV ({exc})") from None


def _read_xlsx(path: Path) -> list[list[Any]]:
    import openpyxl  # only label spreadsheets need it

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a broken workbook
        raise ValidationError(f"{path}: not a readable .xlsx workbook ({exc})") from None
    try:
        sheet = book.worksheets[0]
        return [list(r) for r in sheet.iter_rows(values_only=True)]
    finally:
        book.close()


def parse_point(value: Any, column: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"column {column}: {value!r} is not a depth")
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip()
        if text.lower() in _NULL_WORDS:
            return None
        try:
            number = float(text.replace(",", "."))
        except ValueError:
            raise ValueError(f"column {column}: {text!r} is not a number") from None
    if math.isnan(number):
        raise ValueError(f"column {column}: {str(value).strip()!r} is not a depth (leave the "
                         "cell empty, or write none, for an absent point)")
    if not math.isfinite(number):
        raise ValueError(f"column {column}: {value!r} is not a finite depth")
    return number


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def import_labels(store: Store, path: Path, by: str = "import") -> ImportReport:
    report = ImportReport()
    index = store.source_index()
    for number, row in read_rows(path):
        key = _text(row.get("hole_id")) or _text(row.get("path")) or ""
        try:
            if not key:
                raise ValueError("no path or hole id")
            found = index.lookup(key)
            if not found:
                raise ValueError(f"unknown hole {key!r} (not ingested?)")
            if len(found) > 1:
                raise ValueError(
                    f"{key!r} matches {len(found)} holes ({', '.join(found[:5])}); "
                    "use the path relative to the ingest folder or the hole id"
                )
            hole_id = found[0]
            points = DepthPoints(*(parse_point(row.get(c), c) for c in POINT_COLUMNS))
            detail = {c: _text(row.get(c)) for c in DETAIL_COLUMNS if _text(row.get(c))}
            current = store.latest_label(hole_id)
            if current is not None and _same_label(current, points, detail):
                report.unchanged.append({"row": number, "key": key, "hole_id": hole_id})
                continue
            label_id = store.add_label(hole_id, points, by=by, origin="import",
                                       detail=detail or None)
        except (ValueError, ValidationError) as exc:
            report.rejected.append({"row": number, "key": key, "error": str(exc)})
            continue
        report.imported.append(
            {"row": number, "key": key, "hole_id": hole_id, "label_id": label_id}
        )
    return report


def _same_label(current: Label, points: DepthPoints, detail: dict[str, Any]) -> bool:
    """The points, method and confidence agree (notes alone do not make a new label)."""
    old = current.detail or {}
    return points_of(current) == points and all(
        old.get(k) == detail.get(k) for k in ("method", "confidence")
    )


def export_labels(store: Store, path: Path) -> int:
    """Write every hole's latest label; returns the number of rows written."""
    path = Path(path)
    suffix = _check_suffix(path)
    rows: list[list[Any]] = []
    index = store.source_index()
    for label in store.latest_labels():
        hole = store.get_hole(label.hole_id)
        detail = label.detail or {}
        rows.append([
            index.shortest_name(hole.source, hole.source_group),
            label.entry_mm, label.transition_mm, label.exit_mm,
            detail.get("method") or _METHOD_OF_ORIGIN.get(label.origin, label.origin),
            detail.get("confidence"),
            detail.get("notes"),
        ])
    rows.sort(key=lambda r: r[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if suffix == ".csv":
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(COLUMNS)
            for r in rows:
                writer.writerow(["" if v is None else (repr(v) if isinstance(v, float) else v)
                                 for v in r])
    else:
        import openpyxl

        book = openpyxl.Workbook()
        sheet = book.active
        sheet.title = "labels"
        sheet.append(list(COLUMNS))
        for r in rows:
            sheet.append(r)
        book.save(tmp)
    tmp.replace(path)
    return len(rows)
