"""Revoked agents (``relay gateway agents revoke``): no exports, return stream cut off."""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``agent_revocations``."""
    op.create_table(
        "agent_revocations",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=False),
        sa.Column("cutoff", sa.BigInteger, nullable=False),
    )
