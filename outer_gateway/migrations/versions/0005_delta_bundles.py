"""Delta bundles (ADR 0015): the change clock, each secret's change mark, and the exported
bundles that may serve as a delta's base."""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``secrets.changed`` (0: unchanged since the upgrade), ``change_clock`` and
    ``export_bases``. No acknowledgement is known yet, so every agent's next bundle is full."""
    op.add_column(
        "secrets", sa.Column("changed", sa.BigInteger, nullable=False, server_default="0")
    )
    op.create_index("ix_secrets_changed", "secrets", ["changed"])
    op.create_table(
        "change_clock",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO change_clock (id, n) VALUES (1, 0)")
    op.create_table(
        "export_bases",
        sa.Column("agent", sa.String(63), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("bundle_id", sa.String(64), nullable=False),
        sa.Column("mark", sa.BigInteger, nullable=False),
        sa.Column("grants", sa.Text, nullable=False),
        sa.Column("full", sa.Boolean, nullable=False),
        sa.Column("acked", sa.Boolean, nullable=False),
        sa.Column("refused", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_export_bases_bundle_id", "export_bases", ["bundle_id"])
