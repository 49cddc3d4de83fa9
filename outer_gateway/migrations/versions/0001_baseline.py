"""The gateway store of relay 0.1.0 (agents, secrets, grants, audit tables, meta).

Those stores recorded no revision; they are taken as this one. A new store is created from
``outer_gateway.schema`` and stamped with the head instead, so there is nothing to run here.
"""

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing: the tables exist."""
