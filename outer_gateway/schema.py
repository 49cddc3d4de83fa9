"""The gateway store's tables (SQLAlchemy Core): SQLCipher by default, PostgreSQL for a fleet."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from relay.audit.tables import add_local_audit_tables, add_received_audit_tables

metadata = MetaData()

agents = Table(
    "agents",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("key_id", String(16), nullable=False, unique=True),
    Column("sign_public", LargeBinary, nullable=False),
    Column("box_public", LargeBinary, nullable=False),
    Column("enrolled_at", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False, default=0),
    Column("last_export", BigInteger),
)

# The current version of each secret; a removed secret stays as a tombstone (deleted, no value).
secrets = Table(
    "secrets",
    metadata,
    Column("path", String(256), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("value", LargeBinary),
    Column("expires_at", BigInteger),
    Column("updated_at", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
)

grants = Table(
    "grants",
    metadata,
    Column("agent", String(63), ForeignKey("agents.name", ondelete="CASCADE"), primary_key=True),
    Column("pattern", String(256), primary_key=True),
)

# Revoked agents (``relay gateway agents revoke``): no exports; return stream refused after
# ``cutoff`` (bundles created later).
agent_revocations = Table(
    "agent_revocations",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("key_id", String(16), nullable=False),
    Column("revoked_at", BigInteger, nullable=False),
    Column("cutoff", BigInteger, nullable=False),
)

add_local_audit_tables(metadata)
add_received_audit_tables(metadata)

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
