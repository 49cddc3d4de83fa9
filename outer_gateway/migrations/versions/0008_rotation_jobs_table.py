"""The scheduled rotation jobs' table, with the store (APScheduler made it at first use, and two
``relay gateway run`` processes starting together on a new PostgreSQL store both tried)."""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``rotation_jobs`` as APScheduler's job store does, unless it made it already."""
    if sa.inspect(op.get_bind()).has_table("rotation_jobs"):
        return
    op.create_table(
        "rotation_jobs",
        sa.Column("id", sa.Unicode(191), primary_key=True),
        sa.Column("next_run_time", sa.Float(25), index=True),
        sa.Column("job_state", sa.LargeBinary, nullable=False),
    )
