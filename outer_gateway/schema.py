"""The gateway store's tables (SQLAlchemy Core): SQLCipher by default, PostgreSQL for a fleet."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    Unicode,
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
    # Start of the period from which ``relay gateway run`` exports to it again (NULL: due now);
    # claimed per batch with FOR UPDATE SKIP LOCKED on PostgreSQL (outer_gateway/fleet.py).
    Column("next_export_at", BigInteger),
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
    # The change clock's value when the row last changed (outer_gateway/delta.py): a delta
    # bundle carries the rows changed since its base's mark, found by this index.
    Column("changed", BigInteger, nullable=False, default=0, server_default="0", index=True),
)

# One row (id 1): the change clock. Every write of ``secrets`` takes the next value in its
# transaction, holding the row until it commits (PostgreSQL), so a mark read by an export never
# passes a change that commits later.
change_clock = Table(
    "change_clock",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("n", BigInteger, nullable=False),
)

# Forward bundles exported per agent, while they may still serve as a delta's base: the change
# clock's mark and the grants they were built from, and whether the agent acknowledged
# (``bundle.applied`` in its audit) or refused (``delta_base_missing``) them.
export_bases = Table(
    "export_bases",
    metadata,
    Column("agent", String(63), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("bundle_id", String(64), nullable=False, index=True),
    Column("mark", BigInteger, nullable=False),
    Column("grants", Text, nullable=False),  # JSON array of the agent's patterns, sorted
    Column("full_state", Boolean, nullable=False),
    Column("acked", Boolean, nullable=False, default=False),
    Column("refused", Boolean, nullable=False, default=False),
    Column("created_at", BigInteger, nullable=False),
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

# Labelled versions beside ``secrets`` (the current ones): ``previous`` (``at`` = end of the
# overlap) and ``pending`` (``at`` = activates_at; ``overlap`` = how long the version it replaces
# stays previous). See relay/bundle/versions.py.
secret_versions = Table(
    "secret_versions",
    metadata,
    Column("path", String(256), primary_key=True),
    Column("label", String(16), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("expires_at", BigInteger),
    Column("at", BigInteger),
    Column("overlap", BigInteger),
    Column("created_at", BigInteger, nullable=False),
)

# Rotation policies (``relay gateway policy set``); durations in seconds.
rotation_policies = Table(
    "rotation_policies",
    metadata,
    Column("pattern", String(256), primary_key=True),
    Column("rotate_every", BigInteger),
    Column("length", Integer, nullable=False),
    Column("charset", String(256), nullable=False),
    Column("overlap", BigInteger),
    Column("max_offline_age", BigInteger),
    Column("fail_closed", Boolean, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Rotation items received from agents in the return stream (relay/bundle/rotation_items.py),
# taken in the same transaction as their audit records and then acted on (``processed_at``):
# requests rotate at the gateway, escrows become new versions, outcomes are kept for status.
rotation_inbox = Table(
    "rotation_inbox",
    metadata,
    Column("agent", String(63), primary_key=True),
    Column("id", String(32), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("path", String(256), nullable=False),
    Column("reason", String(16)),
    Column("version", Integer),
    Column("base", Integer),
    Column("value", LargeBinary),  # escrow: sealed with the store key on PostgreSQL
    Column("status", String(16)),
    Column("detail", Text),
    Column("received_at", BigInteger, nullable=False),
    Column("processed_at", BigInteger),
    Column("result", String(32)),  # what the gateway did: rotated, recorded, not_found, kept
    Column("result_version", Integer),
    Column("hook", String(64)),  # hook items: the hook's name (status holds ok/failed/timeout)
    Column("exit_status", Integer),  # hook items: a command's exit status
)

# The scheduled rotation jobs (outer_gateway/rotation_schedule.py): APScheduler's
# SQLAlchemyJobStore table, made with the store rather than by APScheduler at its first use,
# where two `gateway run` processes starting together on a new PostgreSQL store both ran
# CREATE TABLE and one failed (a unique violation in PostgreSQL's catalog).
rotation_jobs = Table(
    "rotation_jobs",
    metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)
