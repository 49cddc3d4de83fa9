"""Hook runs reported by agents: ``rotation_inbox.hook`` and ``rotation_inbox.exit_status``."""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the two columns (those missing: 0003 may have made the table from today's schema)."""
    held = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("rotation_inbox")}
    with op.batch_alter_table("rotation_inbox") as batch:
        if "hook" not in held:
            batch.add_column(sa.Column("hook", sa.String(64)))
        if "exit_status" not in held:
            batch.add_column(sa.Column("exit_status", sa.Integer))
