"""The read path of ``relay agent get``: one SELECT on the raw SQLCipher driver.

Scripts call ``relay agent get`` in loops, so this path avoids SQLAlchemy's import and engine
set-up (hundreds of milliseconds); the schema itself is owned by :mod:`inner_agent.schema`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relay.codes import NOT_FOUND
from relay.errors import EXPIRED, SecretError


@dataclass(frozen=True)
class Secret:
    """A secret value with its metadata. Never log or print ``value`` except to its reader."""

    path: str
    value: bytes
    version: int
    expires_at: int | None

    def __repr__(self) -> str:
        return f"Secret(path={self.path!r}, version={self.version}, value=<hidden>)"


def read_secret(conn: Any, path: str, now: int) -> Secret:
    """The current value of ``path`` on a raw store connection (:mod:`inner_agent.rawdb`);
    ``not_found`` or ``expired`` (``SecretError``) otherwise."""
    row = conn.execute(
        "SELECT value, version, expires_at FROM secrets WHERE path = ?", (path,)
    ).fetchone()
    if row is None:
        raise SecretError(f"no secret {path!r} is granted to this agent", code=NOT_FOUND)
    value, version, expires_at = row
    if expires_at is not None and now >= expires_at:
        raise SecretError(f"secret {path!r} expired at {expires_at}", code=EXPIRED)
    return Secret(path, bytes(value), int(version), expires_at)
