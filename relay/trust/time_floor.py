"""The persisted time floor (:mod:`relay.trust.clock`) of an agent's or a hop's store: kept in
the store's ``meta`` table (``key``, ``value``), raised in the transaction that applies or
forwards a bundle, never lowered."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

FLOOR_KEY = "time_floor"


def raise_floor(conn: Connection | Any, created: int) -> None:
    """Raise the floor to ``created`` (the bundle's signed creation time) if higher.
    ``conn``: the transaction's connection, SQLAlchemy or raw."""
    from relay.db import bulk_execute

    held = _held(conn)
    if held is None or created > held:
        bulk_execute(conn, _SET, [(FLOOR_KEY, str(created))])


_SET = (
    "INSERT INTO meta (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


def read_floor(engine: Engine) -> int | None:
    """The floor, or ``None`` before the first bundle."""
    with engine.connect() as conn:
        return _held(conn)


def _held(conn: Connection | Any) -> int | None:
    from relay.db import fetch_all

    held = fetch_all(conn, "SELECT value FROM meta WHERE key = ?", (FLOOR_KEY,))
    return int(held[0][0]) if held else None
