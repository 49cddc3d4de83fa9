"""The agent's persisted time floor (``relay.trust.clock``): kept in the store's meta table,
raised in the apply transaction of every bundle, never lowered."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

FLOOR_KEY = "time_floor"


def raise_floor(conn: Connection | Any, created: int) -> None:
    """Raise the floor to ``created`` (the applied bundle's signed creation time) if higher.
    ``conn``: the apply transaction's connection, SQLAlchemy or raw."""
    from relay.db import bulk_execute, fetch_all

    held = fetch_all(conn, "SELECT value FROM meta WHERE key = ?", (FLOOR_KEY,))
    if not held or created > int(held[0][0]):
        bulk_execute(conn, _SET, [(FLOOR_KEY, str(created))])


_SET = (
    "INSERT INTO meta (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


def read_floor(engine: Engine) -> int | None:
    """The floor, or ``None`` before the first applied bundle."""
    from sqlalchemy import select

    from inner_agent import schema

    t = schema.meta
    with engine.connect() as conn:
        held = conn.execute(select(t.c.value).where(t.c.key == FLOOR_KEY)).scalar_one_or_none()
    return None if held is None else int(held)
