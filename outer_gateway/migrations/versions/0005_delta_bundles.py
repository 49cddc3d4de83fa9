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
    ``export_bases`` (those missing). No acknowledgement is known yet, so every agent's next
    bundle is full."""
    inspector = sa.inspect(op.get_bind())
    if "changed" not in {c["name"] for c in inspector.get_columns("secrets")}:
        op.add_column(
            "secrets", sa.Column("changed", sa.BigInteger, nullable=False, server_default="0")
        )
    if "ix_secrets_changed" not in {i["name"] for i in inspector.get_indexes("secrets")}:
        op.create_index("ix_secrets_changed", "secrets", ["changed"])
    held = set(inspector.get_table_names())
    if "change_clock" not in held:
        op.create_table(
            "change_clock",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("n", sa.BigInteger, nullable=False),
        )
        op.execute("INSERT INTO change_clock (id, n) VALUES (1, 0)")
    if "export_bases" not in held:
        op.create_table(
            "export_bases",
            sa.Column("agent", sa.String(63), primary_key=True),
            sa.Column("seq", sa.BigInteger, primary_key=True),
            sa.Column("bundle_id", sa.String(64), nullable=False),
            sa.Column("mark", sa.BigInteger, nullable=False),
            sa.Column("grants", sa.Text, nullable=False),
            sa.Column("full_state", sa.Boolean, nullable=False),
            sa.Column("acked", sa.Boolean, nullable=False),
            sa.Column("refused", sa.Boolean, nullable=False),
            sa.Column("created_at", sa.BigInteger, nullable=False),
        )
        op.create_index("ix_export_bases_bundle_id", "export_bases", ["bundle_id"])
