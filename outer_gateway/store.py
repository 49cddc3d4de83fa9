"""The gateway's store: enrolled agents, secrets (with versions and tombstones) and grants.

Written in SQLAlchemy Core that SQLite (SQLCipher) and PostgreSQL both run; bulk writes go
through :func:`relay.db.bulk_execute`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from outer_gateway import schema
from relay.db import bulk_execute, fetch_all, sqlcipher_engine, write_transaction
from relay.errors import SecretError, UsageError
from relay.home import Home
from relay.identity import PublicIdentity

_UPSERT = (
    "INSERT INTO secrets (path, version, value, expires_at, updated_at, deleted) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET version = excluded.version, "
    "value = excluded.value, expires_at = excluded.expires_at, "
    "updated_at = excluded.updated_at, deleted = excluded.deleted"
)
_CURRENT = "SELECT path, version, value, deleted, expires_at FROM secrets"
_ALL_ROWS = "SELECT path, version, value, expires_at, deleted FROM secrets"


@dataclass(frozen=True)
class Agent:
    """An enrolled agent."""

    identity: PublicIdentity
    enrolled_at: int
    last_seq: int
    last_export: int | None


@dataclass(frozen=True)
class GatewaySecretMeta:
    """A secret's metadata at the gateway: never its value."""

    path: str
    version: int
    expires_at: int | None
    updated_at: int
    deleted: bool


class GatewayStore:
    """The store of a gateway home."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, home: Home) -> GatewayStore:
        engine = sqlcipher_engine(home.store_path, home.secrets.store_key)
        schema.metadata.create_all(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- agents ------------------------------------------------------------------------------

    def enroll(self, agent: PublicIdentity, now: int) -> bool:
        """Record ``agent``; True if new. A known name with other keys is ``already_enrolled``."""
        t = schema.agents
        with write_transaction(self.engine) as conn:
            row = conn.execute(select(t.c.key_id).where(t.c.name == agent.name)).first()
            if row is not None:
                if row.key_id == agent.key_id:
                    return False
                raise UsageError(
                    f"an agent named {agent.name!r} is enrolled with other keys",
                    code="already_enrolled",
                )
            conn.execute(
                insert(t).values(
                    name=agent.name,
                    key_id=agent.key_id,
                    sign_public=agent.sign_public,
                    box_public=agent.box_public,
                    enrolled_at=now,
                    last_seq=0,
                )
            )
        return True

    def agents(self) -> list[Agent]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.agents).order_by(schema.agents.c.name)).all()
        return [
            Agent(
                PublicIdentity("agent", r.name, bytes(r.sign_public), bytes(r.box_public)),
                r.enrolled_at,
                r.last_seq,
                r.last_export,
            )
            for r in rows
        ]

    def agent(self, name: str) -> Agent:
        for agent in self.agents():
            if agent.identity.name == name:
                return agent
        raise UsageError(f"no enrolled agent named {name!r}", code="unknown_agent")

    def next_seq(self, name: str, now: int) -> int:
        """Reserve the next forward-stream seq of ``name`` (committed before the bundle is
        written, so a seq is never reused for different content)."""
        t = schema.agents
        with write_transaction(self.engine) as conn:
            seq = conn.execute(select(t.c.last_seq).where(t.c.name == name)).scalar_one() + 1
            conn.execute(update(t).where(t.c.name == name).values(last_seq=seq, last_export=now))
        return int(seq)

    # -- secrets -----------------------------------------------------------------------------

    def put_secret(self, path: str, value: bytes, expires_at: int | None, now: int) -> int:
        """Store a new version of ``path``; returns the version."""
        with write_transaction(self.engine) as conn:
            version = _current_versions(conn, [path]).get(path, 0) + 1
            bulk_execute(conn, _UPSERT, [(path, version, value, expires_at, now, False)])
        return version

    def import_secrets(
        self, values: dict[str, bytes], expires_at: int | None, now: int
    ) -> tuple[int, int]:
        """Bulk put; a path whose value is unchanged keeps its version. Returns (written, same)."""
        with write_transaction(self.engine) as conn:
            # One driver-level read of the table, without per-row result objects:
            # path -> (path, version, value, deleted, expires_at).
            current = {row[0]: row for row in fetch_all(conn, _CURRENT)}
            rows = []
            for path, value in values.items():
                old = current.get(path)
                if old and not old[3] and old[2] == value and old[4] == expires_at:
                    continue
                rows.append((path, (old[1] if old else 0) + 1, value, expires_at, now, False))
            bulk_execute(conn, _UPSERT, rows)
        return len(rows), len(values) - len(rows)

    def remove_secret(self, path: str, now: int) -> int:
        """Turn ``path`` into a tombstone (a new version with no value); returns the version."""
        t = schema.secrets
        with write_transaction(self.engine) as conn:
            row = conn.execute(select(t.c.version, t.c.deleted).where(t.c.path == path)).first()
            if row is None or row.deleted:
                raise SecretError(f"no secret {path!r}", code="not_found")
            conn.execute(
                update(t)
                .where(t.c.path == path)
                .values(version=row.version + 1, value=None, deleted=True, updated_at=now)
            )
        return int(row.version) + 1

    def list_secrets(self, include_deleted: bool = False) -> list[GatewaySecretMeta]:
        t = schema.secrets
        query = select(t.c.path, t.c.version, t.c.expires_at, t.c.updated_at, t.c.deleted)
        if not include_deleted:
            query = query.where(t.c.deleted.is_(False))
        with self.engine.connect() as conn:
            return [GatewaySecretMeta(*r) for r in conn.execute(query.order_by(t.c.path))]

    def all_rows(self) -> list[tuple[str, int, bytes | None, int | None, bool]]:
        """(path, version, value, expires_at, deleted) of every secret, for export."""
        with self.engine.connect() as conn:
            rows = fetch_all(conn, _ALL_ROWS)
        return [
            (path, version, value, expires, bool(deleted))
            for path, version, value, expires, deleted in rows
        ]

    # -- grants ------------------------------------------------------------------------------

    def grant(self, agent: str, pattern: str) -> bool:
        """Let ``agent`` receive paths matching ``pattern``; True if the grant is new."""
        self.agent(agent)
        t = schema.grants
        with write_transaction(self.engine) as conn:
            exists = conn.execute(
                select(t.c.pattern).where(t.c.agent == agent, t.c.pattern == pattern)
            ).first()
            if exists:
                return False
            conn.execute(insert(t).values(agent=agent, pattern=pattern))
        return True

    def revoke(self, agent: str, pattern: str) -> None:
        """Remove a grant; ``not_found`` if there was none."""
        t = schema.grants
        with write_transaction(self.engine) as conn:
            done = conn.execute(delete(t).where(t.c.agent == agent, t.c.pattern == pattern))
            if done.rowcount == 0:
                raise UsageError(f"{agent!r} has no grant {pattern!r}", code="not_found")

    def grants(self, agent: str | None = None) -> list[tuple[str, str]]:
        t = schema.grants
        query = select(t.c.agent, t.c.pattern).order_by(t.c.agent, t.c.pattern)
        if agent is not None:
            query = query.where(t.c.agent == agent)
        with self.engine.connect() as conn:
            return [(r.agent, r.pattern) for r in conn.execute(query)]


def _current_versions(conn: Connection, paths: list[str]) -> dict[str, int]:
    t = schema.secrets
    rows = conn.execute(select(t.c.path, t.c.version).where(t.c.path.in_(paths)))
    return {r.path: r.version for r in rows}
