"""The read path of ``relay agent get``: one SELECT on the raw SQLCipher driver.

Scripts call ``relay agent get`` in loops, so this path avoids SQLAlchemy's import and engine
set-up (hundreds of milliseconds); the schema itself is owned by :mod:`inner_agent.schema`.
Labels (current, previous, pending) are resolved with the caller's clock by
:func:`inner_agent.labels.resolve`.
"""

from __future__ import annotations

from typing import Any

from inner_agent.labels import CURRENT, StoredVersion, resolve
from relay.codes import NOT_FOUND
from relay.errors import EXPIRED, SecretError
from relay.frozen import frozen

_READ = (
    "SELECT 'current', value, version, expires_at, NULL, NULL FROM secrets WHERE path = ? "
    "UNION ALL SELECT label, value, version, expires_at, at, overlap FROM secret_versions "
    "WHERE path = ?"
)
_READ_CURRENT_ONLY = (
    "SELECT 'current', value, version, expires_at, NULL, NULL FROM secrets WHERE path = ?"
)


@frozen
class Secret:
    """A secret value with its metadata. Never log or print ``value`` except to its reader."""

    path: str
    value: bytes
    version: int
    expires_at: int | None
    switch_at: int | None = None  # when a pending successor becomes current (cache bound)

    def __repr__(self) -> str:
        return f"Secret(path={self.path!r}, version={self.version}, value=<hidden>)"


def stored_versions(conn: Any, path: str) -> list[StoredVersion]:
    """Every stored row of ``path`` (current, previous, pending) on a raw or DB-API connection."""
    try:
        rows = conn.execute(_READ, (path, path)).fetchall()
    except Exception as exc:  # a store written before labelled versions existed
        if "secret_versions" not in str(exc):
            raise
        rows = conn.execute(_READ_CURRENT_ONLY, (path,)).fetchall()
    return [StoredVersion(r[0], bytes(r[1]), int(r[2]), r[3], r[4], r[5]) for r in rows]


def pick(
    path: str, rows: list[StoredVersion], now: int, label: str = CURRENT, skew: int = 0
) -> Secret | None:
    """The version ``label`` means at ``now`` (expired or not), or ``None``; ``skew``: the
    leeway on ``activates_at`` (:func:`inner_agent.labels.resolve`)."""
    resolved = resolve(rows, now, skew)
    row = resolved.by_label.get(label)
    if row is None:
        return None
    switch_at = resolved.switch_at if label == CURRENT else None
    return Secret(path, row.value, row.version, row.expires_at, switch_at)


def read_secret(conn: Any, path: str, now: int, label: str = CURRENT, skew: int = 0) -> Secret:
    """The ``label`` version (default current) of ``path`` on a raw store connection
    (:mod:`inner_agent.rawdb`); ``not_found`` or ``expired`` (``SecretError``) otherwise."""
    secret = pick(path, stored_versions(conn, path), now, label, skew)
    if secret is None:
        what = "" if label == CURRENT else f" (version {label})"
        raise SecretError(f"no secret {path!r}{what} is granted to this agent", code=NOT_FOUND)
    if secret.expires_at is not None and now >= secret.expires_at:
        raise SecretError(f"secret {path!r} expired at {secret.expires_at}", code=EXPIRED)
    return secret
