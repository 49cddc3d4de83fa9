"""The agent store's tables (SQLAlchemy Core), inside the SQLCipher file ``HOME/store.db``."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from relay.audit.tables import add_local_audit_tables
from relay.pinned import pinned_identity_columns

metadata = MetaData()

secrets = Table(
    "secrets",
    metadata,
    Column("path", String(256), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("expires_at", BigInteger),
    Column("updated_at", BigInteger, nullable=False),
    Column("bundle_seq", BigInteger, nullable=False),
)

# The high-water mark of each incoming stream, written in the same transaction as the apply.
streams = Table(
    "streams",
    metadata,
    Column("sender_key", String(16), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("bundle_id", String(64), nullable=False),
    Column("applied_at", BigInteger, nullable=False),
)

# Every bundle ever applied, so that an old one left on a medium is a duplicate, not a rollback.
applied = Table(
    "applied",
    metadata,
    Column("bundle_id", String(64), primary_key=True),
    Column("sender_key", String(16), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("applied_at", BigInteger, nullable=False),
)
Index("applied_stream_seq", applied.c.sender_key, applied.c.kind, applied.c.seq)

# Pinned senders: the gateway this agent trusts (``relay agent trust``).
trusted = Table(
    "trusted",
    metadata,
    *pinned_identity_columns(),
    Column("added_at", BigInteger, nullable=False),
)

add_local_audit_tables(metadata)

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# Applications allowed to read secrets through the local API (``relay agent app``). Only a
# SHA-256 of each client secret is kept (docs/adr/0006-app-secrets.md).
apps = Table(
    "apps",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("client_id", String(64), nullable=False, unique=True),
    Column("secret_sha256", LargeBinary, nullable=False),
    Column("patterns", Text, nullable=False),  # JSON list of grant patterns
    Column("created_at", BigInteger, nullable=False),
)

# Labelled versions beside ``secrets`` (the current ones): ``previous`` (``at`` = end of the
# overlap, NULL: until the next bundle) and ``pending`` (``at`` = activates_at; ``overlap`` = how
# long the version it replaces stays previous). See relay/bundle/versions.py.
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
    Column("updated_at", BigInteger, nullable=False),
)

# Rotation items waiting for the gateway's acknowledgement (relay/bundle/rotation_items.py):
# each rides with the audit record ``seq`` that created it and goes when that record is acked.
rotation_outbox = Table(
    "rotation_outbox",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("body", Text, nullable=False),  # the item's JSON (an escrow holds its value)
    Column("created_at", BigInteger, nullable=False),
)

# Paths with a rotation under way on this agent: a request sent (``base`` = the version then),
# a local rotation not yet confirmed by a forward bundle (``local`` = its version), or a
# candidate value written before an executor ran (crash recovery tries it).
rotation_state = Table(
    "rotation_state",
    metadata,
    Column("path", String(256), primary_key=True),
    Column("state", String(16), nullable=False),  # requested | candidate | local
    Column("base", Integer, nullable=False),
    Column("version", Integer),
    Column("value", LargeBinary),  # candidate or local value (the store file is encrypted)
    Column("request_id", String(32)),
    Column("updated_at", BigInteger, nullable=False),
)
