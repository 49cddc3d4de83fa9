"""The gateway's store: enrolled agents, secrets (with versions and tombstones) and grants.

Written in SQLAlchemy Core that SQLite (SQLCipher) and PostgreSQL both run; bulk writes go
through :func:`relay.db.bulk_execute`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from outer_gateway import schema
from outer_gateway.delta import tick
from relay.codes import ALREADY_ENROLLED, NOT_FOUND, UNKNOWN_AGENT
from relay.db import bulk_execute, fetch_all, server_engine, sqlcipher_engine, write_transaction
from relay.errors import SecretError, UsageError
from relay.home import Home
from relay.identity import PublicIdentity

_PUT_ONE = (
    "INSERT INTO secrets (path, version, value, expires_at, updated_at, deleted, changed) "
    "VALUES (?, 1, ?, ?, ?, false, ?) ON CONFLICT (path) DO UPDATE SET "
    "version = secrets.version + 1, value = excluded.value, expires_at = excluded.expires_at, "
    "updated_at = excluded.updated_at, deleted = false, changed = excluded.changed "
    "RETURNING version"
)
_UPSERT = (
    "INSERT INTO secrets (path, version, value, expires_at, updated_at, deleted, changed) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET version = excluded.version, "
    "value = excluded.value, expires_at = excluded.expires_at, "
    "updated_at = excluded.updated_at, deleted = excluded.deleted, changed = excluded.changed"
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


class ValueCodec:
    """How secret values are kept in the store's ``value`` column.

    In the embedded SQLCipher store the whole file is encrypted, so values are stored as they are.
    On a database server (PostgreSQL) each value is sealed with the home's store key
    (XSalsa20-Poly1305 secretbox), so the server, its backups and its logs never hold a value in
    clear.
    """

    def __init__(self, key: bytes | None) -> None:
        self._box = None
        if key is not None:
            import nacl.secret

            self._box = nacl.secret.SecretBox(key)

    @property
    def plain(self) -> bool:
        """True when values are stored as they are (the embedded store encrypts the whole file)."""
        return self._box is None

    def seal(self, value: bytes) -> bytes:
        return value if self._box is None else bytes(self._box.encrypt(value))

    def open(self, stored: bytes) -> bytes:
        return stored if self._box is None else bytes(self._box.decrypt(stored))


class GatewayStore:
    """The store of a gateway home."""

    def __init__(self, engine: Engine, codec: ValueCodec | None = None) -> None:
        self.engine = engine
        self.codec = codec or ValueCodec(None)

    @classmethod
    def open(cls, home: Home) -> GatewayStore:
        """The home's store: SQLCipher in the home, or ``gateway.store_url`` (PostgreSQL)."""
        from outer_gateway.migrations import prepare_store

        url = str(home.config.get("gateway.store_url"))
        key = home.secrets.store_key
        if url:
            engine = server_engine(url)
            codec = ValueCodec(key)
        else:
            engine = sqlcipher_engine(home.store_path, key)
            codec = ValueCodec(None)
        try:
            prepare_store(engine, None if url else home.store_path, key, schema.metadata)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, codec)

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
                    code=ALREADY_ENROLLED,
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
        raise UsageError(f"no enrolled agent named {name!r}", code=UNKNOWN_AGENT)

    def next_seq(self, name: str, now: int) -> int:
        """Reserve the next forward-stream seq of ``name``: one atomic ``UPDATE … RETURNING``,
        committed before the bundle is written, so concurrent gateway processes never hand out
        the same seq and a seq is never reused for different content."""
        with self.reserve_seq(name, now) as (_, seq):
            return seq

    @contextmanager
    def reserve_seq(self, name: str, now: int) -> Iterator[tuple[Connection, int]]:
        """:meth:`next_seq` as a transaction the caller finishes: what it writes on the yielded
        connection (the sealed bundle's audit record) commits with the seq, or neither does.
        The commit is durable (``synchronous = FULL``) before the bundle file is written."""
        t = schema.agents
        query = (
            update(t)
            .where(t.c.name == name)
            .values(last_seq=t.c.last_seq + 1, last_export=now)
            .returning(t.c.last_seq)
        )
        with write_transaction(self.engine) as conn:
            yield conn, int(conn.execute(query).scalar_one())

    # -- secrets -----------------------------------------------------------------------------

    def put_secret(self, path: str, value: bytes, expires_at: int | None, now: int) -> int:
        """Store a new version of ``path`` (one atomic upsert); returns the version."""
        with write_transaction(self.engine) as conn:
            row = conn.exec_driver_sql(
                _placeholders(conn, _PUT_ONE),
                (path, self.codec.seal(value), expires_at, now, tick(conn)),
            ).first()
        assert row is not None  # noqa: S101 - RETURNING always yields the row
        return int(row[0])

    def import_secrets(
        self,
        values: dict[str, bytes],
        expires_at: int | None,
        now: int,
        overlap: Callable[[str], int] | None = None,
    ) -> tuple[int, int]:
        """Bulk put; a path whose value is unchanged keeps its version. Returns (written, same).
        With ``overlap`` (seconds per path) a change versions as ``secret put`` does
        (:func:`outer_gateway.versions.label_bulk_change`)."""
        plain, seal, open_value = self.codec.plain, self.codec.seal, self.codec.open
        with write_transaction(self.engine) as conn:
            # One driver-level read of the table, without per-row result objects:
            # path -> (path, version, value, deleted, expires_at).
            current = {row[0]: row for row in fetch_all(conn, _CURRENT)}
            rows = []
            for path, value in values.items():
                old = current.get(path)
                if (
                    old
                    and not old[3]
                    and old[4] == expires_at
                    and (old[2] == value if plain else open_value(bytes(old[2])) == value)
                ):
                    continue
                version = (old[1] if old else 0) + 1
                stored = value if plain else seal(value)
                rows.append((path, version, stored, expires_at, now, False))
            if overlap is not None:
                from outer_gateway.versions import label_bulk_change

                rows = label_bulk_change(conn, rows, current, now, overlap)
            if rows:  # one tick for the whole import: its rows change together
                changed = tick(conn)
                bulk_execute(conn, _UPSERT, [(*row, changed) for row in rows])
        return len(rows), len(values) - len(rows)

    def remove_secret(self, path: str, now: int) -> int:
        """Turn ``path`` into a tombstone (a new version with no value); returns the version."""
        t = schema.secrets
        with write_transaction(self.engine) as conn:
            query = (
                update(t)
                .where(t.c.path == path, t.c.deleted.is_(False))
                .values(
                    version=t.c.version + 1,
                    value=None,
                    deleted=True,
                    updated_at=now,
                    changed=tick(conn),
                )
                .returning(t.c.version)
            )
            version = conn.execute(query).scalar_one_or_none()
        if version is None:
            raise SecretError(f"no secret {path!r}", code=NOT_FOUND)
        return int(version)

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
        if self.codec.plain:
            return [
                (path, version, value, expires, bool(deleted))
                for path, version, value, expires, deleted in rows
            ]
        open_value = self.codec.open
        return [
            (p, v, None if value is None else open_value(bytes(value)), e, bool(deleted))
            for p, v, value, e, deleted in rows
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
                raise UsageError(f"{agent!r} has no grant {pattern!r}", code=NOT_FOUND)

    def grants(self, agent: str | None = None) -> list[tuple[str, str]]:
        t = schema.grants
        query = select(t.c.agent, t.c.pattern).order_by(t.c.agent, t.c.pattern)
        if agent is not None:
            query = query.where(t.c.agent == agent)
        with self.engine.connect() as conn:
            return [(r.agent, r.pattern) for r in conn.execute(query)]


def _placeholders(conn: Connection, sql: str) -> str:
    return sql if conn.dialect.name == "sqlite" else sql.replace("?", "%s")
