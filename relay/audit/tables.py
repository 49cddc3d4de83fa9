"""The audit tables each side keeps in its own store (SQLAlchemy Core, SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)


def add_local_audit_tables(metadata: MetaData) -> None:
    """This side's own chain (``audit_log``) and the sinks' delivery cursors."""
    Table(
        "audit_log",
        metadata,
        Column("seq", BigInteger, primary_key=True, autoincrement=False),
        Column("hash", String(64), nullable=False),
        Column("type", String(32), nullable=False),
        Column("time", String(32), nullable=False),
        Column("record", Text, nullable=False),
    )
    Table(
        "sink_cursors",
        metadata,
        Column("name", String(300), primary_key=True),
        Column("position", BigInteger, nullable=False),
    )


def add_received_audit_tables(metadata: MetaData) -> None:
    """On the gateway: records received from agents, merged by (agent, seq), in arrival order."""
    Table(
        "agent_audit",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("agent", String(63), nullable=False),
        Column("seq", BigInteger, nullable=False),
        Column("hash", String(64), nullable=False),
        Column("prev_hash", String(64), nullable=False),
        Column("type", String(32), nullable=False),
        Column("time", String(32), nullable=False),
        Column("record", Text, nullable=False),
        UniqueConstraint("agent", "seq"),
    )
    Table(
        "audit_bundles",
        metadata,
        Column("bundle_id", String(64), primary_key=True),
        Column("agent", String(63), nullable=False),
        Column("seq", BigInteger, nullable=False),
        Column("records", Integer, nullable=False),
        Column("head_seq", BigInteger, nullable=False),
        Column("imported_at", BigInteger, nullable=False),
        Index("audit_bundles_agent_head", "agent", "head_seq"),
    )
