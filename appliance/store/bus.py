"""SQL for the rig's MQTT bus: the durable inbox of messages and the outbox of answers.

A message row is written before the broker is acknowledged; it waits until its hole's
messages pair, then the hole is stored and the payload dropped in the same transaction.
A bus_holes row is the hole's answer owed to the supervisory systems until `published_at`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import duckdb
import pyarrow as pa

from appliance.store.codec import utcnow
from appliance.store.rows import one_row
from appliance.trace import Trace


@dataclass(frozen=True)
class InboxRow:
    """A received message as stored; kind/key are None when it could not be read."""

    topic: str
    digest: str
    payload: bytes
    state: str  # waiting | quarantined
    kind: str | None = None
    toolbox: str | None = None
    tool: str | None = None
    result_id: str | None = None
    stamp: str | None = None
    machine_id: str | None = None
    head_id: str | None = None
    reason: str | None = None
    hole_key: str | None = None  # paired at once: stored settled, without its payload


@dataclass(frozen=True)
class WaitingMessage:
    message_id: int
    received_at: datetime
    digest: str
    topic: str
    kind: str
    toolbox: str
    tool: str
    result_id: str
    stamp: str | None
    machine_id: str | None
    head_id: str | None


@dataclass(frozen=True)
class BusHole:
    """A paired hole and what is owed for it: its estimate (hole_id) or an error."""

    hole_key: str
    toolbox: str
    tool: str
    result_id: str
    stamp: str | None
    machine_id: str | None
    head_id: str | None
    hole_id: str | None
    error: str | None


@dataclass(frozen=True)
class BusCounts:
    waiting: int
    paired: int
    quarantined: int
    expired: int
    holes: int
    published: int
    unpublished: int
    errors: int
    last_received_at: datetime | None


_WAITING_COLUMNS = ("message_id, received_at, digest, topic, kind, toolbox, tool, result_id, "
                    "stamp, machine_id, head_id")
_HOLE_COLUMNS = "hole_key, toolbox, tool, result_id, stamp, machine_id, head_id, hole_id, error"


def known_digests(con: duckdb.DuckDBPyConnection, digests: Sequence[str]) -> set[str]:
    if not digests:
        return set()
    rows = con.execute("SELECT digest FROM bus_messages WHERE list_contains(?, digest)",
                       [list(digests)]).fetchall()
    return {r[0] for r in rows}


_INBOX = pa.schema([("received_at", pa.timestamp("us")), ("topic", pa.string()),
                    ("digest", pa.string()), ("kind", pa.string()), ("toolbox", pa.string()),
                    ("tool", pa.string()), ("result_id", pa.string()), ("stamp", pa.string()),
                    ("machine_id", pa.string()), ("head_id", pa.string()),
                    ("payload", pa.binary()), ("size", pa.int64()), ("state", pa.string()),
                    ("reason", pa.string()), ("hole_key", pa.string())])


def insert_messages(con: duckdb.DuckDBPyConnection, rows: Sequence[InboxRow]) -> None:
    """One insert from one Arrow table: a batch of 300 messages is one statement."""
    if not rows:
        return
    now = utcnow()
    new_messages = pa.Table.from_pylist([  # noqa: F841 - read by DuckDB's replacement scan
        {"received_at": now, "topic": r.topic, "digest": r.digest, "kind": r.kind,
         "toolbox": r.toolbox, "tool": r.tool, "result_id": r.result_id, "stamp": r.stamp,
         "machine_id": r.machine_id, "head_id": r.head_id,
         "payload": None if r.state == "paired" else r.payload, "size": len(r.payload),
         "state": r.state, "reason": r.reason, "hole_key": r.hole_key} for r in rows],
        schema=_INBOX)
    names = ", ".join(_INBOX.names)
    con.execute(f"INSERT INTO bus_messages ({names}) SELECT {names} FROM new_messages")


def waiting(con: duckdb.DuckDBPyConnection) -> list[WaitingMessage]:
    rows = con.execute(f"SELECT {_WAITING_COLUMNS} FROM bus_messages WHERE state = 'waiting' "
                       "ORDER BY message_id").fetchall()
    return [WaitingMessage(*r) for r in rows]


def payloads(con: duckdb.DuckDBPyConnection, digests: Sequence[str]) -> dict[str, bytes]:
    if not digests:
        return {}
    rows = con.execute("SELECT digest, payload FROM bus_messages "
                       "WHERE list_contains(?, digest)", [list(digests)]).fetchall()
    return {d: bytes(p) for d, p in rows if p is not None}


@dataclass(frozen=True)
class Settlement:
    """What became of a stored message: paired into a hole (payload dropped: the hole holds
    the data), quarantined or expired (payload kept for a look)."""

    digest: str
    state: str
    hole_key: str | None
    reason: str | None


_SETTLE = pa.schema([("digest", pa.string()), ("state", pa.string()),
                     ("hole_key", pa.string()), ("reason", pa.string())])


def settle_messages(con: duckdb.DuckDBPyConnection, settled: Sequence[Settlement]) -> None:
    if not settled:
        return
    settle = pa.Table.from_pylist(  # noqa: F841 - read by DuckDB's replacement scan
        [{"digest": m.digest, "state": m.state, "hole_key": m.hole_key, "reason": m.reason}
         for m in settled], schema=_SETTLE)
    con.execute("""UPDATE bus_messages SET state = s.state, hole_key = s.hole_key,
                       reason = s.reason,
                       payload = CASE WHEN s.state = 'paired' THEN NULL ELSE payload END
                   FROM settle AS s WHERE bus_messages.digest = s.digest""")


def find_holes(con: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> dict[str, BusHole]:
    if not keys:
        return {}
    rows = con.execute(f"SELECT {_HOLE_COLUMNS} FROM bus_holes WHERE list_contains(?, hole_key)",
                       [list(keys)]).fetchall()
    return {r[0]: BusHole(*r) for r in rows}


def holes_for(con: duckdb.DuckDBPyConnection, toolbox: str, tool: str, result_id: str
              ) -> list[BusHole]:
    rows = con.execute(f"""SELECT {_HOLE_COLUMNS} FROM bus_holes
                           WHERE toolbox = ? AND tool = ? AND result_id = ?""",
                       [toolbox, tool, result_id]).fetchall()
    return [BusHole(*r) for r in rows]


_HOLES = pa.schema([(name, pa.string()) for name in _HOLE_COLUMNS.split(", ")]
                   + [("created_at", pa.timestamp("us"))])


def insert_holes(con: duckdb.DuckDBPyConnection, holes: Sequence[BusHole]) -> None:
    if not holes:
        return
    now = utcnow()
    new_bus_holes = pa.Table.from_pylist(  # noqa: F841 - read by DuckDB's replacement scan
        [{**asdict(h), "created_at": now} for h in holes], schema=_HOLES)
    names = ", ".join(_HOLES.names)
    con.execute(f"INSERT INTO bus_holes ({names}) SELECT {names} FROM new_bus_holes")


def set_head(con: duckdb.DuckDBPyConnection, hole_key: str, head_id: str | None) -> None:
    con.execute("UPDATE bus_holes SET head_id = coalesce(head_id, ?) WHERE hole_key = ?",
                [head_id, hole_key])


def unpublished(con: duckdb.DuckDBPyConnection) -> list[BusHole]:
    rows = con.execute(f"SELECT {_HOLE_COLUMNS} FROM bus_holes WHERE published_at IS NULL "
                       "ORDER BY created_at").fetchall()
    return [BusHole(*r) for r in rows]


def mark_published(con: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> None:
    if keys:
        con.execute("UPDATE bus_holes SET published_at = ? "
                    "WHERE list_contains(?, hole_key) AND published_at IS NULL",
                    [utcnow(), list(keys)])


def expire(con: duckdb.DuckDBPyConnection, before: datetime, reason: str
           ) -> list[WaitingMessage]:
    """Waiting messages that arrived before `before`: marked expired (payload kept for a
    look), returned so their holes can be answered with an error."""
    rows = con.execute(f"SELECT {_WAITING_COLUMNS} FROM bus_messages "
                       "WHERE state = 'waiting' AND received_at < ? ORDER BY message_id",
                       [before]).fetchall()
    found = [WaitingMessage(*r) for r in rows]
    settle_messages(con, [Settlement(m.digest, "expired", None, reason) for m in found])
    return found


def counts(con: duckdb.DuckDBPyConnection) -> BusCounts:
    by_state = dict(con.execute(
        "SELECT state, count(*) FROM bus_messages GROUP BY state").fetchall())
    holes, published, errors = one_row(
        con, "SELECT count(*), count(published_at), count(error) FROM bus_holes")
    last = one_row(con, "SELECT max(received_at) FROM bus_messages")[0]
    return BusCounts(
        waiting=int(by_state.get("waiting", 0)), paired=int(by_state.get("paired", 0)),
        quarantined=int(by_state.get("quarantined", 0)),
        expired=int(by_state.get("expired", 0)), holes=int(holes), published=int(published),
        unpublished=int(holes) - int(published), errors=int(errors), last_received_at=last)


@dataclass(frozen=True)
class PairToStore:
    """A hole's messages settled together: its trace stored (trace given) or its messages
    quarantined with the hole's error; `hole.hole_id` is filled in when stored."""

    hole: BusHole
    digests: tuple[str, ...]
    trace: Trace | None
    group: str | None


def prune(con: duckdb.DuckDBPyConnection, before: datetime) -> int:
    """Forget settled messages that arrived before `before`: their digests guarded against
    redeliveries, which do not come a day later; the holes themselves stay."""
    row = con.execute("DELETE FROM bus_messages WHERE state = 'paired' AND received_at < ? "
                      "RETURNING 1", [before]).fetchall()
    return len(row)


def seen(con: duckdb.DuckDBPyConnection) -> tuple[list[str], list[str]]:
    digests = [r[0] for r in con.execute(
        "SELECT digest FROM bus_messages ORDER BY message_id").fetchall()]
    keys = [r[0] for r in con.execute(
        "SELECT hole_key FROM bus_holes ORDER BY created_at").fetchall()]
    return digests, keys
