"""Rotation: labelled versions (previous, pending), rotation policies, and the rotation items
received from agents (docs/rotation.md)."""

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``secret_versions``, ``rotation_policies`` and ``rotation_inbox`` (those missing)."""
    held = set(sa.inspect(op.get_bind()).get_table_names())
    create = _create_missing(held)
    create(
        "secret_versions",
        sa.Column("path", sa.String(256), primary_key=True),
        sa.Column("label", sa.String(16), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("expires_at", sa.BigInteger),
        sa.Column("at", sa.BigInteger),
        sa.Column("overlap", sa.BigInteger),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    create(
        "rotation_policies",
        sa.Column("pattern", sa.String(256), primary_key=True),
        sa.Column("rotate_every", sa.BigInteger),
        sa.Column("length", sa.Integer, nullable=False),
        sa.Column("charset", sa.String(256), nullable=False),
        sa.Column("overlap", sa.BigInteger),
        sa.Column("max_offline_age", sa.BigInteger),
        sa.Column("fail_closed", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    create(
        "rotation_inbox",
        sa.Column("agent", sa.String(63), primary_key=True),
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("path", sa.String(256), nullable=False),
        sa.Column("reason", sa.String(16)),
        sa.Column("version", sa.Integer),
        sa.Column("base", sa.Integer),
        sa.Column("value", sa.LargeBinary),
        sa.Column("status", sa.String(16)),
        sa.Column("detail", sa.Text),
        sa.Column("received_at", sa.BigInteger, nullable=False),
        sa.Column("processed_at", sa.BigInteger),
        sa.Column("result", sa.String(32)),
        sa.Column("result_version", sa.Integer),
    )


def _create_missing(held: set[str]) -> Callable[..., None]:
    """``op.create_table`` for the tables not there yet (a store whose tables were made from
    today's schema before it was stamped has them already)."""

    def create(name: str, *columns: Any) -> None:
        if name not in held:
            op.create_table(name, *columns)

    return create
