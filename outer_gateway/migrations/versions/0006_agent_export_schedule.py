"""When each agent is next due for a scheduled export (``relay gateway run``, ADR 0016)."""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``agents.next_export_at`` (NULL: due now)."""
    op.add_column("agents", sa.Column("next_export_at", sa.BigInteger, nullable=True))
