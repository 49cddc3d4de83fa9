"""A side's own audit log in its store: append to the chain, read it back, feed the sinks.

Storage-agnostic: every function takes ``execute(sql, params) -> rows`` running inside the
caller's transaction, with ``?`` placeholders. The agent passes its raw SQLCipher connection (so
``relay agent get`` records its read without importing SQLAlchemy); the gateway passes its
SQLAlchemy connection (SQLite or PostgreSQL).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from relay.audit.chain import AuditRecord, next_record, record_from_json, record_to_json
from relay.audit.record import FieldValue

if TYPE_CHECKING:  # the sink stack (sockets, syslog formats) is imported only to deliver
    from relay.audit.sinks import QueuedRecord, SinkCursor

Execute = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

# One session per process start: records of one session share a monotonic clock.
SESSION_ID = f"{os.getpid()}-{secrets.token_hex(6)}"


def append(execute: Execute, event_type: str, fields: Mapping[str, FieldValue]) -> AuditRecord:
    """Append one record after the newest held; run inside a write transaction."""
    rows = execute("SELECT record FROM audit_log ORDER BY seq DESC LIMIT 1", ())
    prev = record_from_json(rows[0][0]) if rows else None
    record = next_record(
        prev, SESSION_ID, event_type, fields, datetime.now(UTC), time.monotonic_ns()
    )
    execute(
        "INSERT INTO audit_log (seq, hash, type, time, record) VALUES (?, ?, ?, ?, ?)",
        (record.seq, record.hash, record.type, record.time, record_to_json(record)),
    )
    return record


def append_many(
    execute: Execute, records: Sequence[tuple[str, Mapping[str, FieldValue]]]
) -> list[AuditRecord]:
    """:func:`append` for several records (``(event_type, fields)`` in order): one read of the
    newest record and one multi-row insert per hundred, in the caller's write transaction."""
    made = chain_many(execute, records)
    for start in range(0, len(made), 100):
        chunk = made[start : start + 100]
        holes = ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk))
        params = [value for r in chunk for value in row_of(r)]
        execute(f"INSERT INTO audit_log (seq, hash, type, time, record) VALUES {holes}", params)  # noqa: S608
    return made


# audit_log's columns in the order of :func:`row_of`, with their PostgreSQL types.
ROW_COLUMNS = (
    ("seq", "bigint"),
    ("hash", "text"),
    ("type", "text"),
    ("time", "text"),
    ("record", "text"),
)


def chain_many(
    execute: Execute, records: Sequence[tuple[str, Mapping[str, FieldValue]]]
) -> list[AuditRecord]:
    """The records that follow the newest held one (``(event_type, fields)`` in order), not yet
    stored: the caller inserts :func:`row_of` each in the same write transaction (as
    :func:`append_many` does)."""
    rows = execute("SELECT record FROM audit_log ORDER BY seq DESC LIMIT 1", ())
    prev = record_from_json(rows[0][0]) if rows else None
    made: list[AuditRecord] = []
    for event_type, fields in records:
        prev = next_record(
            prev, SESSION_ID, event_type, fields, datetime.now(UTC), time.monotonic_ns()
        )
        made.append(prev)
    return made


def row_of(record: AuditRecord) -> tuple[int, str, str, str, str]:
    """The ``audit_log`` row of ``record`` (columns as :data:`ROW_COLUMNS`)."""
    return (record.seq, record.hash, record.type, record.time, record_to_json(record))


def records_after(execute: Execute, seq: int, limit: int | None = None) -> list[AuditRecord]:
    """Held records with a seq above ``seq``, ascending."""
    sql = "SELECT record FROM audit_log WHERE seq > ? ORDER BY seq"
    params: tuple[Any, ...] = (seq,)
    if limit is not None:
        sql += " LIMIT ?"
        params = (seq, limit)
    return [record_from_json(row[0]) for row in execute(sql, params)]


def head(execute: Execute) -> tuple[int, str] | None:
    """(seq, hash) of the newest record, or ``None`` before the first."""
    rows = execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", ())
    return (int(rows[0][0]), str(rows[0][1])) if rows else None


def prune_through(execute: Execute, seq: int) -> int:
    """Delete records up to ``seq`` but always keep the newest (the chain continues from it)."""
    rows = execute(
        "SELECT count(*) FROM audit_log WHERE seq <= ? AND seq < (SELECT max(seq) FROM audit_log)",
        (seq,),
    )
    execute(
        "DELETE FROM audit_log WHERE seq <= ? AND seq < (SELECT max(seq) FROM audit_log)", (seq,)
    )
    return int(rows[0][0])


def local_source(execute: Execute, name: str) -> Callable[[int, int], Sequence[QueuedRecord]]:
    """A sink source over this side's own log, positions = seq, tagged with ``name``."""

    from relay.audit.sinks import QueuedRecord

    def load_after(position: int, limit: int) -> Sequence[QueuedRecord]:
        return [QueuedRecord(r.seq, name, r) for r in records_after(execute, position, limit)]

    return load_after


def sink_cursor(execute: Execute, name: str) -> SinkCursor:
    """The persisted delivery position of the sink called ``name`` (0 before its first)."""
    from relay.audit.sinks import SinkCursor

    def load() -> int:
        rows = execute("SELECT position FROM sink_cursors WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

    def save(position: int) -> None:
        execute(
            "INSERT INTO sink_cursors (name, position) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            (name, position),
        )

    return SinkCursor(load, save)
