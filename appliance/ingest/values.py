"""Cell conversions shared by the Setitec and JSON parsers (and mirrored by the writers).

Every converter takes the source name and a location so that a bad cell becomes an
IngestError that says where it is, never a bare ValueError.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from appliance.errors import IngestError

# Controllers log local time as "2021-11-19:11:10:26"; synthesized files use ISO "...T...Z".
_SETITEC_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2}):(\d{2}:\d{2}:\d{2})$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")
_EPOCH = re.compile(r"^\d{9,11}(\.\d+)?$")

_TRUE = {"true", "ok", "1"}
_FALSE = {"false", "notok", "nok", "0"}


def clean_text(value: object) -> str:
    """A metadata string without padding, NUL bytes or literal ``\\u0000`` noise."""
    text = "" if value is None else str(value)
    return text.replace("\x00", "").replace("\\u0000", "").strip()


def to_float(value: object, source: str, where: str, name: str) -> float:
    """A number written with a decimal comma or dot (``' 1,000'``, ``'Inf'``, ``4.5``)."""
    if isinstance(value, bool):
        raise IngestError(source, f"{name}: expected a number, got a boolean {value!r}", where)
    if isinstance(value, int | float):
        return float(value)
    text = clean_text(value).replace(",", ".")
    try:
        return float(text)
    except ValueError:
        raise IngestError(source, f"{name}: {clean_text(value)!r} is not a number", where) from None


def to_opt_float(value: object, source: str, where: str, name: str) -> float | None:
    if value is None or clean_text(value) == "":
        return None
    return to_float(value, source, where, name)


def to_opt_int(value: object, source: str, where: str, name: str) -> int | None:
    """An integer counter; ``'414'``, ``'414,000'`` and ``414.0`` are all 414."""
    number = to_opt_float(value, source, where, name)
    if number is None:
        return None
    if not math.isfinite(number) or number != int(number):
        raise IngestError(source, f"{name}: {clean_text(value)!r} is not a whole number", where)
    return int(number)


def to_opt_bool(value: object, source: str, where: str, name: str) -> bool | None:
    """True/False/TRUE/FALSE as logged, Ok/OK/NotOK as the JSON ResultEvaluation says."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    text = clean_text(value).lower()
    if text == "":
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise IngestError(source, f"{name}: {clean_text(value)!r} is not a boolean", where)


def iso_date(value: object) -> tuple[str | None, bool]:
    """(ISO 8601 date or None, clock_not_set) of a logged date.

    "2021-11-19:11:10:26" -> "2021-11-19T11:10:26" (local time, kept without zone);
    ISO strings are kept as written; epoch seconds (JSON CreationTime) become ISO Z.
    A 1970 date means the controller clock was never set: kept, but flagged.
    """
    text = clean_text(value)
    if not text:
        return None, False
    match = _SETITEC_DATE.match(text)
    if match:
        iso = f"{match.group(1)}T{match.group(2)}"
    elif _ISO_DATE.match(text):
        iso = text
    elif _EPOCH.match(text):
        iso = datetime.fromtimestamp(float(text), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        return None, False
    return iso, iso.startswith("1970-")


def setitec_date(iso: str | None) -> str:
    """The controller's own date spelling of an ISO date (inverse of iso_date)."""
    if not iso:
        return ""
    if iso.endswith("Z") or "+" in iso[10:]:
        return iso
    return iso.replace("T", ":", 1)
