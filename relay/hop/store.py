"""The hop's own small store (SQLCipher in its home): pinned identities, what it forwarded, and
its audit chain."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    LargeBinary,
    MetaData,
    String,
    Table,
    insert,
    select,
)
from sqlalchemy.engine import Engine

from relay.audit.tables import add_local_audit_tables
from relay.db import sqlcipher_engine, write_transaction
from relay.home import Home
from relay.identity import PublicIdentity
from relay.pinned import pinned_by_key_id, pinned_identity_columns
from relay.trust.chain import ChainResult
from relay.trust.time_floor import raise_floor, read_floor

metadata = MetaData()
pinned = Table(
    "pinned",
    metadata,
    *pinned_identity_columns(),
)
forwarded = Table(
    "forwarded",
    metadata,
    Column("bundle_id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("sender", String(63), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("forwarded_at", BigInteger, nullable=False),
)
# Gateways trusted by their root (spec §15), as the agent does: every root accepted, the
# revocations held, and the newest certified online key (used only to skip a file already
# forwarded from its verified head). Written by :mod:`relay.hop.trust_store`.
gateway_roots = Table(
    "gateway_roots",
    metadata,
    Column("gateway", String(63), primary_key=True),
    Column("version", BigInteger, primary_key=True),
    Column("root_key", LargeBinary, nullable=False),
    Column("accepted_at", BigInteger, nullable=False),
)
revoked_keys = Table(
    "revoked_keys",
    metadata,
    Column("gateway", String(63), primary_key=True),
    Column("key_id", String(16), primary_key=True),
    Column("serial", BigInteger, nullable=False),
    Column("received_at", BigInteger, nullable=False),
)
certified = Table(
    "certified",
    metadata,
    Column("gateway", String(63), primary_key=True),
    Column("serial", BigInteger, nullable=False),
    Column("key_id", String(16), nullable=False),
    Column("sign_public", LargeBinary, nullable=False),
    Column("box_public", LargeBinary, nullable=False),
)
# Small named values: the time floor (``relay.trust.time_floor``), raised by every forwarded
# bundle's signed ``created`` time, never lowered.
meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)
add_local_audit_tables(metadata)


class HopStore:
    """Pinned senders and forwarded bundles of one hop home."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, home: Home) -> HopStore:
        from relay.hop.migrations import STEPS
        from relay.store_version import prepare_engine

        key = home.secrets.store_key
        engine = sqlcipher_engine(home.store_path, key)
        try:
            prepare_engine(engine, home.store_path, key, STEPS, metadata)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def pin(self, identity: PublicIdentity) -> bool:
        """Trust ``identity`` as a sender; True if it is new."""
        with write_transaction(self.engine) as conn:
            if conn.execute(
                select(pinned.c.key_id).where(pinned.c.key_id == identity.key_id)
            ).first():
                return False
            conn.execute(
                insert(pinned).values(
                    key_id=identity.key_id,
                    role=identity.role,
                    name=identity.name,
                    sign_public=identity.sign_public,
                    box_public=identity.box_public,
                )
            )
        return True

    def senders(self) -> dict[str, PublicIdentity]:
        """The senders pinned by key (agents, and gateways not trusted by a root)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(pinned)).all()
        return pinned_by_key_id(rows)

    def time_floor(self) -> int | None:
        """The newest signed ``created`` time forwarded, or ``None`` before the first bundle."""
        return read_floor(self.engine)

    def was_forwarded(self, bundle_id: str) -> bool:
        query = select(forwarded.c.name).where(forwarded.c.bundle_id == bundle_id)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def mark(
        self,
        bundle_id: str,
        name: str,
        size: int,
        kind: str,
        sender: str,
        seq: int,
        now: int,
        chain: ChainResult | None = None,
        created: int | None = None,
    ) -> None:
        """Record a forwarded bundle, and what its certificate chain taught, and raise the time
        floor to its signed ``created`` time (one transaction)."""
        with write_transaction(self.engine) as conn:
            if chain is not None:
                from relay.hop.trust_store import remember_chain

                remember_chain(conn, chain, now)
            if created is not None:
                raise_floor(conn, created)
            conn.execute(
                insert(forwarded).values(
                    bundle_id=bundle_id,
                    name=name,
                    size=size,
                    kind=kind,
                    sender=sender,
                    seq=seq,
                    forwarded_at=now,
                )
            )
