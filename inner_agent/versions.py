"""The agent store's labelled versions: applying them from a bundle, activating pending ones.

``secrets`` holds the current versions (what the fast read path and older tools see);
``secret_versions`` holds ``previous`` and ``pending``. Both functions here run inside the
caller's write transaction, so a bundle and the activations it makes due are one commit.
The store keeps no history: a version no label needs is deleted (pruned).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from relay.bundle.payload import decode_value
from relay.bundle.versions import VersionRow
from relay.db import bulk_execute, fetch_all

_HELD = "SELECT path, label, version, at, overlap, expires_at FROM secret_versions"
_UPSERT = (
    "INSERT INTO secret_versions (path, label, version, value, expires_at, at, overlap, "
    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path, label) DO UPDATE SET "
    "version = excluded.version, value = excluded.value, expires_at = excluded.expires_at, "
    "at = excluded.at, overlap = excluded.overlap, updated_at = excluded.updated_at"
)
_DELETE = "DELETE FROM secret_versions WHERE path = ? AND label = ?"
_DUE = (
    "SELECT path, version, value, expires_at, at, overlap FROM secret_versions "
    "WHERE label = 'pending' AND at <= ? ORDER BY path"
)
_CURRENT = "SELECT version, value, expires_at, bundle_seq FROM secrets WHERE path = ?"
_SET_CURRENT = (
    "INSERT INTO secrets (path, version, value, expires_at, updated_at, bundle_seq) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET version = excluded.version, "
    "value = excluded.value, expires_at = excluded.expires_at, updated_at = excluded.updated_at"
)
_PRUNE = (
    "DELETE FROM secret_versions WHERE (label = 'previous' AND at IS NOT NULL AND at <= ?) "
    "OR path NOT IN (SELECT path FROM secrets UNION SELECT path FROM secret_versions "
    "WHERE label = 'pending')"
)


@dataclass(frozen=True)
class Activation:
    """A pending version that became current (``replaced`` is the version it displaced)."""

    path: str
    version: int
    replaced: int | None
    activates_at: int


def apply_versions(conn: Connection, rows: list[VersionRow], now: int) -> int:
    """Make the stored previous/pending rows exactly ``rows``; returns how many were written."""
    held = {(r[0], r[1]): r[2:] for r in fetch_all(conn, _HELD)}
    changed = []
    for path, label, version, value, expires, at, overlap in rows:
        if held.get((path, label)) != (version, at, overlap, expires):
            changed.append((path, label, version, decode_value(value), expires, at, overlap, now))
    wanted = {(r[0], r[1]) for r in rows}
    gone = [key for key in held if key not in wanted]
    bulk_execute(conn, _UPSERT, changed)
    bulk_execute(conn, _DELETE, gone)
    return len(changed) + len(gone)


def activate_due(conn: Connection, now: int, skew: int = 0) -> list[Activation]:
    """Make every pending version whose ``activates_at`` has come (give or take ``skew``, as
    :func:`inner_agent.labels.resolve` judges it) current; the version it replaces becomes
    previous (for its overlap), and an ``activated`` outcome is queued for the gateway. Then
    prune what no label needs."""
    done = []
    for path, version, value, expires, at, overlap in fetch_all(conn, _DUE, (now + skew,)):
        old = fetch_all(conn, _CURRENT, (path,))
        replaced = None
        if old and int(old[0][0]) < version:
            replaced = int(old[0][0])
            until = None if overlap is None else at + overlap
            row = (path, "previous", replaced, old[0][1], old[0][2], until, None, now)
            bulk_execute(conn, _UPSERT, [row])
        if not old or int(old[0][0]) < version:
            seq = int(old[0][3]) if old else 0
            bulk_execute(conn, _SET_CURRENT, [(path, version, value, expires, now, seq)])
            done.append(Activation(path, int(version), replaced, int(at)))
        bulk_execute(conn, _DELETE, [(path, "pending")])
    bulk_execute(conn, _PRUNE, [(now,)])
    if done:  # each switch travels back as an outcome (inner_agent/rotation_outbox.py)
        from inner_agent.rotation_outbox import report_versions
        from relay.db import sa_executor

        reports = [(a.path, a.version, a.replaced, "activated") for a in done]
        report_versions(sa_executor(conn), reports, now)
    return done


def next_activation(conn: Connection) -> int | None:
    """The earliest ``activates_at`` of a pending version, if any."""
    rows = fetch_all(conn, "SELECT min(at) FROM secret_versions WHERE label = 'pending'")
    return None if not rows or rows[0][0] is None else int(rows[0][0])
