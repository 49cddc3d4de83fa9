"""Labelled versions at the gateway: a new current keeps the old one as ``previous`` for the
overlap; a pre-staged ``pending`` version becomes current at its ``activates_at``.

Versions of one path only grow: a new version is one above the highest held (current or
pending), chosen inside the write transaction that holds the path's row locked (PostgreSQL
``FOR UPDATE``; SQLite serialises writers), so two racing writers get two versions, the later
one wins, and both are recorded. SQLAlchemy Core only: SQLCipher and PostgreSQL both run it.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, and_, delete, insert, select, update
from sqlalchemy.engine import Connection

from outer_gateway import schema
from outer_gateway.delta import tick
from outer_gateway.store import GatewayStore
from relay.bundle.versions import PENDING, PREVIOUS, VersionRow
from relay.db import bulk_execute, fetch_all, write_transaction

S = schema.secrets
V = schema.secret_versions


@dataclass(frozen=True)
class Written:
    """A version written: its number, the version it replaced and a pending one it superseded."""

    version: int
    replaced: int | None
    superseded: int | None


@dataclass(frozen=True)
class Promotion:
    """A pending version that became current at the gateway."""

    path: str
    version: int
    replaced: int | None


def put_current(
    store: GatewayStore, path: str, value: bytes, expires_at: int | None, now: int, overlap: int
) -> Written:
    """Make ``value`` the current version of ``path`` now; the old one stays previous for
    ``overlap`` seconds (0: not kept); a pending version is superseded (dropped)."""
    with write_transaction(store.engine) as conn:
        current, pending = _lock(conn, path)
        version = _next_version(current, pending)
        replaced = _retire_current(conn, path, current, now, overlap, now)
        _set_current(conn, path, version, store.codec.seal(value), expires_at, now, current)
        superseded = None
        if pending is not None:
            conn.execute(delete(V).where(V.c.path == path, V.c.label == PENDING))
            superseded = int(pending.version)
    return Written(version, replaced, superseded)


def stage_pending(
    store: GatewayStore,
    path: str,
    value: bytes,
    expires_at: int | None,
    activates_at: int,
    overlap: int,
    now: int,
) -> Written:
    """Pre-stage ``value`` as the pending version of ``path``, current from ``activates_at``
    (a pending version staged before is superseded)."""
    with write_transaction(store.engine) as conn:
        current, pending = _lock(conn, path)
        version = _next_version(current, pending)
        conn.execute(delete(V).where(V.c.path == path, V.c.label == PENDING))
        conn.execute(
            insert(V).values(
                path=path,
                label=PENDING,
                version=version,
                value=store.codec.seal(value),
                expires_at=expires_at,
                at=activates_at,
                overlap=overlap,
                created_at=now,
            )
        )
    return Written(version, None, None if pending is None else int(pending.version))


def promote_due(store: GatewayStore, now: int) -> list[Promotion]:
    """Make current every pending version whose time has come; drop previous versions whose
    overlap has ended. Returns what was promoted."""
    promoted = []
    with write_transaction(store.engine) as conn:
        due = conn.execute(
            select(V.c.path).where(V.c.label == PENDING, V.c.at <= now).order_by(V.c.path)
        ).all()
        for (path,) in due:
            current, pending = _lock(conn, path)
            if pending is None:
                continue
            replaced = _retire_current(conn, path, current, now, pending.overlap or 0, pending.at)
            _set_current(
                conn, path, pending.version, pending.value, pending.expires_at, now, current
            )
            conn.execute(delete(V).where(V.c.path == path, V.c.label == PENDING))
            promoted.append(Promotion(path, int(pending.version), replaced))
        conn.execute(delete(V).where(V.c.label == PREVIOUS, V.c.at <= now))
    return promoted


PlainVersion = tuple[str, str, int, bytes, int | None, int | None, int | None]


def version_rows(store: GatewayStore, now: int) -> list[PlainVersion]:
    """Every live previous/pending version (value opened), for export."""
    query = (
        select(V.c.path, V.c.label, V.c.version, V.c.value, V.c.expires_at, V.c.at, V.c.overlap)
        .select_from(V.outerjoin(S, S.c.path == V.c.path))
        .where(S.c.deleted.is_not(True) | (V.c.label == PENDING))
        .where((V.c.label == PENDING) | (V.c.at > now))
        .order_by(V.c.path, V.c.label)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    opened = store.codec.open
    return [
        (r.path, r.label, int(r.version), opened(bytes(r.value)), r.expires_at, r.at, r.overlap)
        for r in rows
    ]


def to_payload_row(row: PlainVersion) -> VersionRow:
    """``row`` with its value in base64, as the payload carries it."""
    path, label, version, value, expires, at, overlap = row
    encoded = binascii.b2a_base64(value, newline=False).decode()
    return (path, label, version, encoded, expires, at, overlap if label == PENDING else None)


_PENDING = "SELECT path, version FROM secret_versions WHERE label = 'pending'"
_DROP_LABEL = "DELETE FROM secret_versions WHERE path = ? AND label = ?"
_KEEP_PREVIOUS = (
    "INSERT INTO secret_versions (path, label, version, value, expires_at, at, overlap, "
    "created_at) VALUES (?, 'previous', ?, ?, ?, ?, NULL, ?)"
)
StoredRow = tuple[str, int, bytes, int | None, int, bool]


def label_bulk_change(
    conn: Connection,
    rows: list[StoredRow],
    held: dict[str, tuple[Any, ...]],
    now: int,
    overlap: Callable[[str], int],
) -> list[StoredRow]:
    """Inside a bulk import's transaction: version ``rows`` (path, version, stored value,
    expires_at, updated_at, deleted) as :func:`put_current` does. Each is numbered above the
    current and any pending version of its path, the live value it replaces stays previous for
    ``overlap(path)`` seconds (0: not kept), and a pending version is superseded (dropped).
    ``held`` maps a path to its current row (path, version, value, deleted, expires_at).
    Returns the renumbered rows."""
    if not rows:
        return rows
    pending = {str(p): int(v) for p, v in fetch_all(conn, _PENDING)}
    out: list[StoredRow] = []
    dropped: list[tuple[str, str]] = []
    kept: list[tuple[str, int, bytes, int | None, int, int]] = []
    for path, numbered, stored, expires, updated, deleted in rows:
        version = numbered
        if path in pending:
            version = max(numbered, pending[path] + 1)
            dropped.append((path, PENDING))
        old = held.get(path)
        if old is not None and not old[3] and old[2] is not None:
            dropped.append((path, PREVIOUS))
            seconds = overlap(path)
            if seconds > 0:
                kept.append((path, int(old[1]), bytes(old[2]), old[4], now + seconds, now))
        out.append((path, version, stored, expires, updated, deleted))
    bulk_execute(conn, _DROP_LABEL, dropped)
    bulk_execute(conn, _KEEP_PREVIOUS, kept)
    return out


def drop_stale_labels(store: GatewayStore) -> int:
    """Forget labelled versions a bulk change made inconsistent (a pending version not above the
    current one, a previous version not below it); returns how many."""
    stale = (
        select(V.c.path, V.c.label)
        .join(S, S.c.path == V.c.path)
        .where(
            ((V.c.label == PENDING) & (V.c.version <= S.c.version))
            | ((V.c.label == PREVIOUS) & (V.c.version >= S.c.version))
        )
    )
    with write_transaction(store.engine) as conn:
        rows = conn.execute(stale).all()
        for path, label in rows:
            conn.execute(delete(V).where(V.c.path == path, V.c.label == label))
    return len(rows)


def granted_versions(
    store: GatewayStore, granted: Callable[[str], object], now: int
) -> list[VersionRow]:
    """The payload rows of the live versions whose paths ``granted`` matches."""
    return [to_payload_row(r) for r in version_rows(store, now) if granted(r[0]) is not None]


def labelled(store: GatewayStore) -> dict[str, dict[str, tuple[int, int | None]]]:
    """path -> {label: (version, at)} of the previous and pending versions held."""
    out: dict[str, dict[str, tuple[int, int | None]]] = {}
    with store.engine.connect() as conn:
        for r in conn.execute(select(V.c.path, V.c.label, V.c.version, V.c.at)):
            out.setdefault(r.path, {})[r.label] = (int(r.version), r.at)
    return out


def drop_versions(store: GatewayStore, path: str) -> None:
    """Forget the previous and pending versions of a removed path."""
    with write_transaction(store.engine) as conn:
        conn.execute(delete(V).where(V.c.path == path))


def _lock(conn: Connection, path: str) -> tuple[Row[Any] | None, Row[Any] | None]:
    current = conn.execute(select(S).where(S.c.path == path).with_for_update()).first()
    pending = conn.execute(
        select(V).where(and_(V.c.path == path, V.c.label == PENDING)).with_for_update()
    ).first()
    return current, pending


def _next_version(current: Row[Any] | None, pending: Row[Any] | None) -> int:
    held = [int(r.version) for r in (current, pending) if r is not None]
    return max(held, default=0) + 1


def _retire_current(
    conn: Connection, path: str, current: Row[Any] | None, now: int, overlap: int, since: int
) -> int | None:
    """Keep the live current version as previous until ``since + overlap``."""
    if current is None or current.deleted or current.value is None:
        return None
    conn.execute(delete(V).where(V.c.path == path, V.c.label == PREVIOUS))
    if overlap > 0 and since + overlap > now:
        conn.execute(
            insert(V).values(
                path=path,
                label=PREVIOUS,
                version=current.version,
                value=current.value,
                expires_at=current.expires_at,
                at=since + overlap,
                overlap=None,
                created_at=now,
            )
        )
    return int(current.version)


def _set_current(
    conn: Connection,
    path: str,
    version: int,
    stored: bytes,
    expires_at: int | None,
    now: int,
    current: Row[Any] | None,
) -> None:
    values = {
        "version": version,
        "value": stored,
        "expires_at": expires_at,
        "updated_at": now,
        "deleted": False,
        "changed": tick(conn),  # a delta on an earlier base carries it (outer_gateway/delta.py)
    }
    if current is None:
        conn.execute(insert(S).values(path=path, **values))
    else:
        conn.execute(update(S).where(S.c.path == path).values(**values))
