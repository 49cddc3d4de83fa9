"""Index received audit bundles by agent and head seq (the acknowledgement query per agent)."""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``audit_bundles_agent_head``."""
    op.create_index("audit_bundles_agent_head", "audit_bundles", ["agent", "head_seq"])
