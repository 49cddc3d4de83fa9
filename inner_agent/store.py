"""The agent's encrypted store: secrets, the trusted gateway and stream high-water marks.

Bundles are written through :meth:`AgentStore.receiving`: one transaction in which the receive
pipeline (:mod:`relay.bundle.receive`) reads the stream state and
:meth:`ReceivingStream.apply` writes the bundle with its high-water mark: all of it or nothing.
The store judges nothing itself. An import that changes 1%
of the secrets writes about 1% of the rows (rows whose version did not change are left alone),
and a delta bundle (spec §8.3) reads and writes only the rows it names.

What a running agent does while idle (reads for the API, health and freshness, the activation of
pending versions every second) goes through raw SQLCipher connections; SQLAlchemy is imported and
its engine made only when something writes through it (an import, ``trust``, ``app add``) or a new
store needs its tables (docs/adr/0018-lean-agent.md).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inner_agent.labels import CURRENT
from inner_agent.lookup import Secret, pick, stored_versions
from inner_agent.versions import Activation, activate_due
from relay.bundle.verify import HighWater
from relay.codes import ALREADY_TRUSTED
from relay.db import bulk_execute, fetch_all, sqlcipher_connect, write_transaction
from relay.errors import UsageError
from relay.home import Home
from relay.identity import PublicIdentity

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from relay.bundle.payload import SecretsPayload
    from relay.bundle.receive import Received
    from relay.trust.chain import RootState

_UPSERT = (
    "INSERT INTO secrets (path, version, value, expires_at, updated_at, bundle_seq) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET version = excluded.version, "
    "value = excluded.value, expires_at = excluded.expires_at, "
    "updated_at = excluded.updated_at, bundle_seq = excluded.bundle_seq"
)
_INSERT = (
    "INSERT INTO secrets (path, version, value, expires_at, updated_at, bundle_seq) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_DELETE = "DELETE FROM secrets WHERE path = ?"
_VERSIONS = "SELECT path, version FROM secrets"
_CHUNK = 500  # paths per IN (...) query
_APPLIED = (
    "INSERT INTO applied (bundle_id, sender_key, kind, seq, applied_at) VALUES (?, ?, ?, ?, ?)"
)
_HIGH_WATER = (
    "INSERT INTO streams (sender_key, kind, seq, bundle_id, applied_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (sender_key, kind) DO UPDATE SET seq = excluded.seq, "
    "bundle_id = excluded.bundle_id, applied_at = excluded.applied_at"
)


@dataclass(frozen=True)
class ApplyResult:
    """What one applied bundle changed."""

    seq: int
    written: int
    removed: int
    unchanged: int
    audit_ack: int
    activated: tuple[Activation, ...] = ()  # pending versions made current by this apply


@dataclass(frozen=True)
class SecretMeta:
    """A secret's metadata: never its value."""

    path: str
    version: int
    expires_at: int | None
    updated_at: int
    size: int


class AgentStore:
    """The SQLCipher store of an agent home."""

    def __init__(self, path: Path, key: bytes, skew: int = 0) -> None:
        self.path = path
        self._key = key
        self.skew = skew  # agent.clock_skew: the leeway on activates_at
        self._engine: Engine | None = None
        self._idle: list[Any] = []  # raw connections not in use
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls, home: Home) -> AgentStore:
        from inner_agent.get_command import clock_skew
        from inner_agent.migrations import STEPS
        from relay.store_version import FRESH, ensure_current

        store = cls(home.store_path, home.secrets.store_key, clock_skew(home))
        try:
            with store.raw() as conn:
                found = ensure_current(conn, store.path, store._key, STEPS)
            if found == FRESH:
                from inner_agent import schema
                from relay.store_version import prepare_engine

                prepare_engine(store.engine, store.path, store._key, STEPS, schema.metadata)
        except BaseException:
            store.close()
            raise
        return store

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine on the store, made (and SQLAlchemy imported) at first use."""
        with self._lock:
            if self._engine is None:
                from relay.db import sqlcipher_engine

                self._engine = sqlcipher_engine(self.path, self._key)
            return self._engine

    @contextmanager
    def raw(self) -> Iterator[Any]:
        """A raw SQLCipher connection of this store (autocommit: statements outside
        :func:`inner_agent.rawdb.immediate` are their own transactions), returned to a small
        pool afterwards. One thread at a time uses it."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = sqlcipher_connect(self.path, self._key)
        try:
            yield conn
        except BaseException:
            conn.close()  # an interrupted statement or transaction: do not reuse
            raise
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()  # the store was closed while this connection was in use

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            engine, self._engine = self._engine, None
        for conn in idle:
            conn.close()
        if engine is not None:
            engine.dispose()

    # -- trust -------------------------------------------------------------------------------

    def trust(self, gateway: PublicIdentity, now: int, replace: bool = False) -> bool:
        """Pin ``gateway``; True if it was new. Another pinned gateway needs ``replace``."""
        from sqlalchemy import delete, insert, select

        from inner_agent import schema

        with write_transaction(self.engine) as conn:
            rows = conn.execute(select(schema.trusted.c.key_id)).scalars().all()
            if gateway.key_id in rows:
                return False
            if rows and not replace:
                raise UsageError(
                    "this agent already trusts another gateway; pass --replace to change it",
                    code=ALREADY_TRUSTED,
                )
            conn.execute(delete(schema.trusted))
            conn.execute(delete(schema.gateway_roots))  # a pinned key replaces a pinned root
            conn.execute(delete(schema.revoked_keys))
            conn.execute(
                insert(schema.trusted).values(
                    key_id=gateway.key_id,
                    role=gateway.role,
                    name=gateway.name,
                    sign_public=gateway.sign_public,
                    box_public=gateway.box_public,
                    added_at=now,
                )
            )
        return True

    def trusted_senders(self) -> dict[str, PublicIdentity]:
        with self.raw() as conn:
            rows = conn.execute(
                "SELECT key_id, role, name, sign_public, box_public FROM trusted"
            ).fetchall()
        return {r[0]: PublicIdentity(r[1], r[2], bytes(r[3]), bytes(r[4])) for r in rows}

    def root_state(self) -> RootState | None:
        """The pinned gateway root (spec §15), or ``None`` (:mod:`inner_agent.trust_store`)."""
        from inner_agent.trust_store import root_state_on

        with self.raw() as conn:
            return root_state_on(conn)

    # -- applying bundles --------------------------------------------------------------------

    @contextmanager
    def receiving(self) -> Iterator[ReceivingStream]:
        """One write transaction (``BEGIN IMMEDIATE`` on a raw connection): the receive
        pipeline reads the stream state through the yielded object, then
        :meth:`ReceivingStream.apply` writes what it received. Leaving the block by an exception
        rolls everything back."""
        from inner_agent.rawdb import immediate

        with self.raw() as conn, immediate(conn):
            yield ReceivingStream(conn, self.skew)

    def was_applied(self, bundle_id: str) -> bool:
        """Whether this exact signed bundle was applied."""
        with self.raw() as conn:
            return _was_applied(conn, bundle_id)

    def high_water(self, sender_key: str, kind: str) -> HighWater | None:
        with self.raw() as conn:
            return _high_water(conn, sender_key, kind)

    # -- reading -----------------------------------------------------------------------------

    def list_secrets(self) -> list[SecretMeta]:
        from sqlalchemy import select

        from inner_agent import schema

        t = schema.secrets
        query = select(t.c.path, t.c.version, t.c.expires_at, t.c.updated_at, t.c.value).order_by(
            t.c.path
        )
        with self.engine.connect() as conn:
            return [
                SecretMeta(r.path, r.version, r.expires_at, r.updated_at, len(r.value))
                for r in conn.execute(query)
            ]

    def count_secrets(self) -> int:
        with self.raw() as conn:
            return int(conn.execute("SELECT count(*) FROM secrets").fetchone()[0])

    def set_meta(self, key: str, value: str) -> None:
        with write_transaction(self.engine) as conn:
            _set_meta(conn, key, value)

    def get_meta(self, key: str) -> str | None:
        with self.raw() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def time_floor(self) -> int | None:
        """The persisted time floor (:mod:`relay.trust.time_floor`), or ``None``."""
        from relay.trust.time_floor import FLOOR_KEY

        held = self.get_meta(FLOOR_KEY)
        return None if held is None else int(held)

    def get_secret(self, path: str, now: int | None = None, label: str = CURRENT) -> Secret | None:
        """The ``label`` version of ``path`` at ``now`` (expired or not), or ``None``.
        Without ``now`` a pending version is never current (the stored rows as they are)."""
        with self.raw() as conn:
            rows = stored_versions(conn, path)
        if now is None:
            return pick(path, rows, -1, label)
        return pick(path, rows, now, label, self.skew)

    def labelled(self) -> dict[str, dict[str, tuple[int, int | None]]]:
        """path -> {label: (version, at)} of the previous and pending versions held."""
        out: dict[str, dict[str, tuple[int, int | None]]] = {}
        with self.raw() as conn:
            for path, label, version, at in fetch_all(
                conn, "SELECT path, label, version, at FROM secret_versions"
            ):
                out.setdefault(path, {})[label] = (int(version), at)
        return out

    def activate_due(self, now: int) -> list[Activation]:
        """Switch every pending version whose time has come (one transaction)."""
        from inner_agent.rawdb import immediate

        with self.raw() as conn, immediate(conn):
            return activate_due(conn, now, self.skew)

    def change_marker(self) -> tuple[str, str]:
        """What changes when secrets or apps change (not when audit records are appended):
        the applied bundle of each stream and the registered client ids."""
        with self.raw() as conn:
            row = conn.execute(
                "SELECT (SELECT group_concat(bundle_id) FROM streams), "
                "(SELECT group_concat(client_id) FROM apps)"
            ).fetchone()
        return (str(row[0] or ""), str(row[1] or ""))

    def count_expiring(self, now: int, within: int) -> int:
        """How many secrets expire in ``[now, now + within)``."""
        with self.raw() as conn:
            row = conn.execute(
                "SELECT count(*) FROM secrets WHERE expires_at >= ? AND expires_at < ?",
                (now, now + within),
            ).fetchone()
        return int(row[0])

    def iter_values(self) -> Iterator[tuple[str, bytes]]:
        """Every (path, value): only for tests and exports that need them, never logged."""
        from sqlalchemy import select

        from inner_agent import schema

        with self.engine.connect() as conn:
            for row in conn.execute(select(schema.secrets.c.path, schema.secrets.c.value)):
                yield row.path, bytes(row.value)


class ReceivingStream:
    """The stream state of the store inside one write transaction (a
    :class:`relay.bundle.receive.StreamState`), and the write of one received bundle. ``conn``
    is a raw SQLCipher connection (plain SQL through :func:`relay.db.fetch_all` and
    :func:`relay.db.bulk_execute`, which also take a SQLAlchemy connection)."""

    def __init__(self, conn: Any, skew: int = 0) -> None:
        self.conn = conn
        self.skew = skew

    def high_water(self, sender_key: str, kind: str) -> HighWater | None:
        return _high_water(self.conn, sender_key, kind)

    def was_applied(self, bundle_id: str) -> bool:
        return _was_applied(self.conn, bundle_id)

    def apply(self, received: Received[SecretsPayload], now: int) -> ApplyResult:
        """Write a received secrets bundle and its high-water mark (same transaction)."""
        from inner_agent.rotation import reassert_local
        from inner_agent.trust_store import remember_chain
        from inner_agent.versions import apply_versions
        from relay.trust.time_floor import raise_floor

        conn = self.conn
        header = received.bundle.envelope.header
        bundle_id = received.bundle_id
        payload = received.payload
        seq = header.seq
        if payload.delta:  # the pipeline checked its base (spec §8.3)
            written, gone, updated, current = _write_delta(conn, payload, now, seq)
        else:
            written, gone, updated, current = _write_full(conn, payload, now, seq)
        apply_versions(conn, payload.versions, now)  # previous and pending (spec §8.1)
        reassert_local(conn)  # a local rotation the bundle does not carry yet stays current
        _report_applied(conn, updated, current, now)  # outcomes for the gateway (rotation)
        activated = tuple(activate_due(conn, now, self.skew))
        stream = received.bundle.stream_key  # the sender key id, or a certified gateway's anchor
        _set_high_water(conn, stream, header.kind, header.seq, bundle_id, now)
        if received.bundle.chain is not None:
            remember_chain(conn, received.bundle.chain, now)
        raise_floor(conn, header.created)
        bulk_execute(conn, _APPLIED, [(bundle_id, stream, header.kind, header.seq, now)])
        _set_meta(conn, "policies", json.dumps(payload.policies))  # freshness rules (§8.2)
        _set_meta(conn, "last_import", str(now))
        _set_meta(conn, "last_bundle_created", str(header.created))
        return ApplyResult(
            header.seq, written, gone, len(payload.secrets) - written, payload.audit_ack, activated
        )

    def applied_seq(self, stream_key: str, bundle_id: str) -> int | None:
        """The seq under which ``bundle_id`` was applied in the stream (a delta's base)."""
        rows = fetch_all(
            self.conn,
            "SELECT seq FROM applied WHERE bundle_id = ? AND sender_key = ?",
            (bundle_id, stream_key),
        )
        return None if not rows else int(rows[0][0])


def _write_full(conn: Any, payload: SecretsPayload, now: int, seq: int) -> _Written:
    """Make the stored current versions exactly ``payload.secrets``; (written, removed, the
    rows that replaced a stored version, the versions held before).

    One driver-level read of (path, version); only rows whose version differs are written, with
    the bytes the decoder produced while validating (one decode per value)."""
    current: dict[str, int] = dict(fetch_all(conn, _VERSIONS))
    changed = _changed_rows(payload, current, now, seq)
    # New paths are plain INSERTs (cheaper than an upsert), known ones upserts.
    added = [row for row in changed if row[0] not in current]
    updated = [row for row in changed if row[0] in current] if current else []
    # Paths are unique in a payload: if as many of them are stored as the store holds,
    # nothing is gone, and the set of kept paths need not be built.
    if len(payload.secrets) - len(added) == len(current):
        gone: list[tuple[str]] = []
    else:
        keep = {row[0] for row in payload.secrets}
        gone = [(path,) for path in current if path not in keep]
    bulk_execute(conn, _INSERT, added)
    bulk_execute(conn, _UPSERT, updated)
    bulk_execute(conn, _DELETE, gone)
    return len(changed), len(gone), updated, current


def _write_delta(conn: Any, payload: SecretsPayload, now: int, seq: int) -> _Written:
    """Upsert the delta's rows and delete its tombstones; every other row is left untouched
    (read and written: only the paths the delta names). Returns what :func:`_write_full` does."""
    named = [row[0] for row in payload.secrets] + [row[0] for row in payload.tombstones]
    current = _versions_of(conn, named)
    changed = _changed_rows(payload, current, now, seq)
    gone = [(path,) for path, _ in payload.tombstones if path in current]
    bulk_execute(conn, _UPSERT, changed)
    bulk_execute(conn, _DELETE, gone)
    updated = [row for row in changed if row[0] in current]
    return len(changed), len(gone), updated, current


_Row = tuple[str, int, bytes, int | None, int, int]
_Written = tuple[int, int, list[_Row], dict[str, int]]


def _versions_of(conn: Any, paths: list[str]) -> dict[str, int]:
    """path -> stored version, for ``paths`` only (in chunks under SQLite's variable limit)."""
    found: dict[str, int] = {}
    for start in range(0, len(paths), _CHUNK):
        chunk = paths[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        found.update(fetch_all(conn, f"{_VERSIONS} WHERE path IN ({marks})", tuple(chunk)))
    return found


def _changed_rows(
    payload: SecretsPayload, current: dict[str, int], now: int, seq: int
) -> list[_Row]:
    """The payload's rows whose version is not the stored one, with their values as bytes."""
    from relay.bundle.payload import decode_value

    get = current.get
    if len(payload.values) == len(payload.secrets):
        return [
            (path, version, raw, expires, now, seq)
            for (path, version, _, expires), raw in zip(
                payload.secrets, payload.values, strict=True
            )
            if get(path) != version
        ]
    return [  # a payload not made by decode_secrets_payload
        (path, version, decode_value(value), expires, now, seq)
        for path, version, value, expires in payload.secrets
        if get(path) != version
    ]


def _report_applied(
    conn: Any, updated: list[tuple[Any, ...]], held: dict[str, int], now: int
) -> None:
    """Queue an ``applied`` outcome for each path this bundle moved to a newer version
    (``conn``: the receive transaction's raw connection)."""
    reports = [(r[0], int(r[1]), held[r[0]], "applied") for r in updated if r[1] > held[r[0]]]
    if reports:
        from inner_agent.rawdb import executor
        from inner_agent.rotation_outbox import report_versions

        report_versions(executor(conn), reports, now)


def _was_applied(conn: Connection | Any, bundle_id: str) -> bool:
    return bool(fetch_all(conn, "SELECT seq FROM applied WHERE bundle_id = ?", (bundle_id,)))


def _high_water(conn: Connection | Any, sender_key: str, kind: str) -> HighWater | None:
    rows = fetch_all(
        conn,
        "SELECT seq, bundle_id FROM streams WHERE sender_key = ? AND kind = ?",
        (sender_key, kind),
    )
    return None if not rows else HighWater(int(rows[0][0]), str(rows[0][1]))


def _set_high_water(
    conn: Connection | Any, sender_key: str, kind: str, seq: int, bundle_id: str, now: int
) -> None:
    bulk_execute(conn, _HIGH_WATER, [(sender_key, kind, seq, bundle_id, now)])


def _set_meta(conn: Connection | Any, key: str, value: str) -> None:
    from inner_agent.trust_store import SET_META

    bulk_execute(conn, SET_META, [(key, value)])
