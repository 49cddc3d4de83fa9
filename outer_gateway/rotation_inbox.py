"""The gateway's side of rotation items from agents (``relay/bundle/rotation_items.py``).

:func:`take_items` runs inside the audit import's transaction (an item is held exactly when its
record is, so the acknowledgement covers both); :func:`process_inbox` acts afterwards on what is
not processed yet, so a crash in between only delays the action. Requests rotate the path at the
gateway (the next forward bundle carries the new version); an escrow becomes a new current
version, numbered above everything held (when it raced a gateway rotation, the escrow wins: it
is the value the device now uses; both are audited).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update

from outer_gateway import schema
from outer_gateway.audit import GatewayAudit
from outer_gateway.policies import list_policies, policy_for
from outer_gateway.rotation import overlap_of, rotate_path
from outer_gateway.store import GatewayStore
from outer_gateway.versions import put_current
from relay.bundle.rotation_items import RotationItem
from relay.codes import NOT_FOUND
from relay.db import write_transaction
from relay.errors import SecretError
from relay.home import Home

T = schema.rotation_inbox
_INSERT = (
    "INSERT INTO rotation_inbox (agent, id, seq, kind, path, reason, version, base, value, "
    "status, detail, hook, exit_status, received_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (agent, id) DO NOTHING"
)
REPORTS = ("outcome", "hook")  # what agents report (kept per path, newest first)
KEEP_PER_PATH = 20


@dataclass(frozen=True)
class InboxRow:
    """One received item and what the gateway did with it (never a value)."""

    agent: str
    id: str
    seq: int
    kind: str
    path: str
    reason: str | None
    version: int | None
    base: int | None
    status: str | None
    detail: str | None
    received_at: int
    processed_at: int | None
    result: str | None
    result_version: int | None
    hook: str | None = None
    exit_status: int | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def take_items(
    execute: Any,
    store: GatewayStore,
    agent: str,
    items: tuple[RotationItem, ...],
    now: int,
    new_records: frozenset[int] | None = None,
) -> None:
    """Hold ``items`` (an id seen before is ignored), on the import's transaction. With
    ``new_records`` (the seqs of the records this import stores), an item whose record was held
    already is skipped: it came with that record before (an item travels with its record), so a
    report pruned since (:data:`KEEP_PER_PATH`) is not taken again."""
    seal = store.codec.seal
    for i in items:
        if new_records is not None and i.seq not in new_records:
            continue
        value = None if i.value is None else seal(i.value)
        status = i.result if i.kind == "hook" else i.status
        execute(
            _INSERT,
            (agent, i.id, i.seq, i.kind, i.path, i.reason, i.version, i.base, value,
             status, i.detail, i.hook, i.exit, now),
        )  # fmt: skip


def process_inbox(home: Home, store: GatewayStore, now: int) -> int:
    """Act on every item not processed yet; returns how many."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(T).where(T.c.processed_at.is_(None)).order_by(T.c.received_at, T.c.seq)
        ).all()
    for row in rows:
        result, version = _act(home, store, row, now)
        with write_transaction(store.engine) as conn:
            conn.execute(
                update(T)
                .where(T.c.agent == row.agent, T.c.id == row.id)
                .values(processed_at=now, result=result, result_version=version, value=None)
            )
    _keep_newest_reports(store, {(r.agent, r.path) for r in rows if r.kind in REPORTS})
    return len(rows)


def _keep_newest_reports(store: GatewayStore, paths: set[tuple[str, str]]) -> None:
    """Keep the :data:`KEEP_PER_PATH` newest processed reports (outcomes and hook runs) of each
    agent's path: an agent can send many, the status needs the latest."""
    for agent, path in sorted(paths):
        where = (T.c.agent == agent, T.c.path == path, T.c.kind.in_(REPORTS))
        with write_transaction(store.engine) as conn:
            old = conn.execute(
                select(T.c.id)
                .where(*where, T.c.processed_at.is_not(None))
                .order_by(T.c.seq.desc())
                .offset(KEEP_PER_PATH)
            ).all()
            if old:
                conn.execute(delete(T).where(*where, T.c.id.in_([r.id for r in old])))


def _act(home: Home, store: GatewayStore, row: Any, now: int) -> tuple[str, int | None]:
    audit = GatewayAudit(home, store.engine)
    if row.kind == "request":
        try:
            done = rotate_path(
                home, store, row.path, now, "requested", agent_name=row.agent, request=row.reason
            )
        except SecretError:
            audit.record("rotation.refused", agent_name=row.agent, path=row.path, reason=NOT_FOUND)
            return NOT_FOUND, None
        return "rotated", done.version
    if row.kind == "escrow":
        value = store.codec.open(bytes(row.value))
        policy = policy_for(list_policies(store), row.path)
        written = put_current(store, row.path, value, None, now, overlap_of(home, policy))
        audit.record(
            "secret.escrowed",
            agent_name=row.agent,
            path=row.path,
            version=written.version,
            agent_version=row.version,
            base=row.base,
            replaced=written.replaced,
        )
        return "recorded", written.version
    if row.kind == "hook":
        audit.record(
            "rotation.hook",
            agent_name=row.agent,
            path=row.path,
            version=row.version,
            hook=row.hook,
            result=row.status,
            exit=row.exit_status,
        )
        return "kept", row.version
    audit.record(
        "rotation.outcome",
        agent_name=row.agent,
        path=row.path,
        version=row.version,
        status=row.status,
    )
    return "kept", row.version


def rotation_log(store: GatewayStore, agent: str | None = None) -> list[InboxRow]:
    """Every item received (newest last)."""
    columns = [T.c[name] for name in InboxRow.__dataclass_fields__]
    query = select(*columns).order_by(T.c.received_at, T.c.agent, T.c.seq)
    if agent is not None:
        query = query.where(T.c.agent == agent)
    with store.engine.connect() as conn:
        return [InboxRow(*row) for row in conn.execute(query)]
