"""The labels.csv format of ../shared/data/setitec/labels.csv, read and written in one place.

Columns: path (relative to the CSV's folder), entry_mm, transition_mm, exit_mm (empty when
absent), method (auto | manual | synthetic | ...), confidence (high | medium | low), notes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ValidationError
from appliance.points import POINT_NAMES, DepthPoints

LABEL_COLUMNS: tuple[str, ...] = (
    "path", "entry_mm", "transition_mm", "exit_mm", "method", "confidence", "notes")


@dataclass(frozen=True)
class LabelRow:
    path: str
    points: DepthPoints
    method: str = ""
    confidence: str = ""
    notes: str = ""


def read_labels(csv_path: str | Path) -> list[LabelRow]:
    """Every row of a labels.csv; a missing column or a depth that is not a number is a
    ValidationError naming the file, the line and the field."""
    path = Path(csv_path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ValidationError(f"{path}: cannot read the labels ({exc.strerror or exc})") from exc
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in LABEL_COLUMNS[:4] if c not in (reader.fieldnames or [])]
    if missing:
        raise ValidationError(f"{path}: line 1: missing column(s) {', '.join(missing)} "
                              f"(expected {','.join(LABEL_COLUMNS)})")
    rows = []
    for line_no, rec in enumerate(reader, start=2):
        rel = (rec.get("path") or "").strip()
        if not rel:
            raise ValidationError(f"{path}: line {line_no}: empty path")
        values = {name: _depth(rec.get(f"{name}_mm"), path, line_no, f"{name}_mm")
                  for name in POINT_NAMES}
        rows.append(LabelRow(rel, DepthPoints(values["entry"], values["transition"],
                                              values["exit"]),
                             (rec.get("method") or "").strip(),
                             (rec.get("confidence") or "").strip(),
                             (rec.get("notes") or "").strip()))
    return rows


def write_labels(rows: Iterable[LabelRow], csv_path: str | Path) -> None:
    """Write rows in the labels.csv layout (depths with 4 decimals, empty when absent)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LABEL_COLUMNS)
    for r in rows:
        writer.writerow([r.path, *(_fmt(r.points.get(n)) for n in POINT_NAMES),
                         r.method, r.confidence, r.notes])
    Path(csv_path).write_text(buf.getvalue(), encoding="utf-8")


def _depth(raw: str | None, path: Path, line_no: int, field: str) -> float | None:
    text = (raw or "").strip()
    if not text:
        return None
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        raise ValidationError(
            f"{path}: line {line_no}: {field} {text!r} is not a number") from None
    if value != value:  # NaN
        raise ValidationError(f"{path}: line {line_no}: {field} is NaN")
    return value


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"
