"""The agent's persisted time floor (``relay.trust.clock``): kept in the store's meta table,
raised in the apply transaction of every bundle, never lowered."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

FLOOR_KEY = "time_floor"


def raise_floor(conn: Connection, created: int) -> None:
    """Raise the floor to ``created`` (the applied bundle's signed creation time) if higher."""
    from sqlalchemy import insert, select, update

    from inner_agent import schema

    t = schema.meta
    held = conn.execute(select(t.c.value).where(t.c.key == FLOOR_KEY)).scalar_one_or_none()
    if held is None:
        conn.execute(insert(t).values(key=FLOOR_KEY, value=str(created)))
    elif created > int(held):
        conn.execute(update(t).where(t.c.key == FLOOR_KEY).values(value=str(created)))


def read_floor(engine: Engine) -> int | None:
    """The floor, or ``None`` before the first applied bundle."""
    from sqlalchemy import select

    from inner_agent import schema

    t = schema.meta
    with engine.connect() as conn:
        held = conn.execute(select(t.c.value).where(t.c.key == FLOOR_KEY)).scalar_one_or_none()
    return None if held is None else int(held)
