"""Pinned identities in a store: the columns and the read-back, shared by every table that pins
senders (the agent's trusted gateway, a hop's trusted senders)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, LargeBinary, String

from relay.identity import PublicIdentity


def pinned_identity_columns() -> list[Column[Any]]:
    """Fresh ``key_id`` (primary key), ``role``, ``name``, ``sign_public``, ``box_public``."""
    return [
        Column("key_id", String(16), primary_key=True),
        Column("role", String(16), nullable=False),
        Column("name", String(63), nullable=False),
        Column("sign_public", LargeBinary, nullable=False),
        Column("box_public", LargeBinary, nullable=False),
    ]


def pinned_by_key_id(rows: Any) -> dict[str, PublicIdentity]:
    """Rows of such a table as ``{key_id: PublicIdentity}``."""
    return {
        r.key_id: PublicIdentity(r.role, r.name, bytes(r.sign_public), bytes(r.box_public))
        for r in rows
    }
