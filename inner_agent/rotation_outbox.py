"""The agent's rotation outbox: items for the gateway that ride in audit bundles until acked.

Every item is created in one transaction with the audit record that describes it (the item
takes the record's seq), on the raw store connection the audit log uses. An item leaves the
outbox when the gateway acknowledges its record (``ack.audit_seq``); until then every audit
export carries it again (at least once; the gateway keys items by id).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import Any

from inner_agent.audit import AgentAudit
from inner_agent.rawdb import executor, immediate, raw_connection
from relay.audit import log
from relay.audit.record import FieldValue
from relay.bundle.rotation_items import RotationItem, decode_rotation_items
from relay.home import Home

_INSERT = "INSERT INTO rotation_outbox (id, seq, body, created_at) VALUES (?, ?, ?, ?)"
MAX_ITEMS = 1_000_000
MAX_REPORTED = 1000  # version outcomes per transaction (a bulk change reports its first 1000)


def new_id() -> str:
    return secrets.token_hex(16)


def add_item(
    execute: Any,
    event_type: str,
    fields: dict[str, FieldValue],
    item: dict[str, Any],
    now: int,
) -> RotationItem:
    """Append the audit record and queue ``item`` (``kind``, ``path``, …) with its seq, on the
    caller's open transaction."""
    record = log.append(execute, event_type, fields)
    made = RotationItem(id=new_id(), seq=record.seq, **item)
    execute(_INSERT, (made.id, made.seq, json.dumps(made.to_json()), now))
    return made


def add_items(
    execute: Any,
    entries: Sequence[tuple[str, dict[str, FieldValue], dict[str, Any]]],
    now: int,
) -> list[RotationItem]:
    """:func:`add_item` for many ``(event_type, fields, item)``, the chain's head read once."""
    records = log.append_many(execute, [(event, fields) for event, fields, _ in entries])
    made = []
    for record, (_, _, item) in zip(records, entries, strict=True):
        made.append(RotationItem(id=new_id(), seq=record.seq, **item))
        execute(_INSERT, (made[-1].id, record.seq, json.dumps(made[-1].to_json()), now))
    return made


def report_versions(
    execute: Any, reports: Sequence[tuple[str, int, int | None, str]], now: int
) -> int:
    """On the caller's write transaction (an import, an activation): an ``outcome`` item for each
    ``(path, version, replaced, status)`` (``applied``: a new version from the gateway became
    current; ``activated``: a pre-staged one switched). At most :data:`MAX_REPORTED` per
    transaction; the rest are counted in one ``rotation.outcomes_omitted`` record. Returns how
    many were queued."""
    entries = []
    for path, version, replaced, status in reports[:MAX_REPORTED]:
        how = "from the gateway" if status == "applied" else "pre-staged, switched on time"
        detail = f"version {version} {how}" + (f", replaced {replaced}" if replaced else "")
        fields: dict[str, FieldValue] = {"path": path, "version": version, "status": status}
        item = {"kind": "outcome", **fields, "detail": detail}
        entries.append(("rotation.outcome", fields, item))
    add_items(execute, entries, now)
    if len(reports) > MAX_REPORTED:
        log.append(execute, "rotation.outcomes_omitted", {"count": len(reports) - MAX_REPORTED})
    return min(len(reports), MAX_REPORTED)


def queue(
    home: Home, event_type: str, fields: dict[str, FieldValue], item: dict[str, Any], now: int
) -> RotationItem:
    """:func:`add_item` in its own transaction, then deliver the record to the sinks."""
    with raw_connection(home) as conn:
        execute = executor(conn)
        with immediate(conn):
            made = add_item(execute, event_type, fields, item, now)
    AgentAudit(home).deliver()
    return made


def unacked_items(execute: Any, acked: int) -> tuple[RotationItem, ...]:
    """Every item whose record the gateway has not acknowledged, oldest first."""
    rows = execute("SELECT body FROM rotation_outbox WHERE seq > ? ORDER BY seq", (acked,))
    docs = [json.loads(row[0]) for row in rows]
    return tuple(decode_rotation_items(docs, MAX_ITEMS, 2**31)) if docs else ()


def prune_acked(execute: Any, acked: int) -> None:
    """Forget the items the gateway acknowledged."""
    execute("DELETE FROM rotation_outbox WHERE seq <= ?", (acked,))


def outbox(home: Home) -> list[RotationItem]:
    """Every item still held (for status and tests; escrow values stay inside)."""
    with raw_connection(home) as conn:
        return list(unacked_items(executor(conn), 0))
