"""The agent's encrypted store: secrets, the trusted gateway and stream high-water marks.

Bundles are written through :meth:`AgentStore.receiving`: one transaction in which the receive
pipeline (:mod:`relay.bundle.receive`) reads the stream state and
:meth:`ReceivingStream.apply` writes the bundle with its high-water mark: all of it or nothing.
The store judges nothing itself. An import that changes 1%
of the secrets writes about 1% of the rows (rows whose version did not change are left alone),
and a delta bundle (spec §8.3) reads and writes only the rows it names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from inner_agent import schema
from inner_agent.labels import CURRENT
from inner_agent.lookup import Secret, pick, stored_versions
from inner_agent.rotation import reassert_local
from inner_agent.time_floor import raise_floor
from inner_agent.trust_store import remember_chain
from inner_agent.versions import Activation, activate_due, apply_versions
from relay.bundle.payload import SecretsPayload, decode_value
from relay.bundle.receive import Received
from relay.bundle.verify import HighWater
from relay.codes import ALREADY_TRUSTED
from relay.db import bulk_execute, fetch_all, sa_executor, sqlcipher_engine, write_transaction
from relay.errors import UsageError
from relay.home import Home
from relay.identity import PublicIdentity
from relay.pinned import pinned_by_key_id

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

    def __init__(self, engine: Engine, skew: int = 0) -> None:
        self.engine = engine
        self.skew = skew  # agent.clock_skew: the leeway on activates_at

    @classmethod
    def open(cls, home: Home) -> AgentStore:
        from inner_agent.migrations import STEPS
        from relay.store_version import prepare_engine

        key = home.secrets.store_key
        engine = sqlcipher_engine(home.store_path, key)
        try:
            prepare_engine(engine, home.store_path, key, STEPS, schema.metadata)
        except BaseException:
            engine.dispose()
            raise
        from inner_agent.get_command import clock_skew

        return cls(engine, clock_skew(home))

    def close(self) -> None:
        self.engine.dispose()

    # -- trust -------------------------------------------------------------------------------

    def trust(self, gateway: PublicIdentity, now: int, replace: bool = False) -> bool:
        """Pin ``gateway``; True if it was new. Another pinned gateway needs ``replace``."""
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
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.trusted)).all()
        return pinned_by_key_id(rows)

    # -- applying bundles --------------------------------------------------------------------

    @contextmanager
    def receiving(self) -> Iterator[ReceivingStream]:
        """One write transaction: the receive pipeline reads the stream state through the
        yielded object, then :meth:`ReceivingStream.apply` writes what it received. Leaving the
        block by an exception rolls everything back."""
        with write_transaction(self.engine) as conn:
            yield ReceivingStream(conn, self.skew)

    def was_applied(self, bundle_id: str) -> bool:
        """Whether this exact signed bundle was applied."""
        with self.engine.connect() as conn:
            return _was_applied(conn, bundle_id)

    def high_water(self, sender_key: str, kind: str) -> HighWater | None:
        with self.engine.connect() as conn:
            return _high_water(conn, sender_key, kind)

    # -- reading -----------------------------------------------------------------------------

    def list_secrets(self) -> list[SecretMeta]:
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
        from sqlalchemy import func

        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(schema.secrets)).scalar_one())

    def set_meta(self, key: str, value: str) -> None:
        with write_transaction(self.engine) as conn:
            _set_meta(conn, key, value)

    def get_meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(schema.meta.c.value).where(schema.meta.c.key == key)
            ).scalar_one_or_none()
        return None if value is None else str(value)

    def get_secret(self, path: str, now: int | None = None, label: str = CURRENT) -> Secret | None:
        """The ``label`` version of ``path`` at ``now`` (expired or not), or ``None``.
        Without ``now`` a pending version is never current (the stored rows as they are)."""
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            rows = stored_versions(raw, path)
        if now is None:
            return pick(path, rows, -1, label)
        return pick(path, rows, now, label, self.skew)

    def labelled(self) -> dict[str, dict[str, tuple[int, int | None]]]:
        """path -> {label: (version, at)} of the previous and pending versions held."""
        out: dict[str, dict[str, tuple[int, int | None]]] = {}
        with self.engine.connect() as conn:
            for path, label, version, at in fetch_all(
                conn, "SELECT path, label, version, at FROM secret_versions"
            ):
                out.setdefault(path, {})[label] = (int(version), at)
        return out

    def activate_due(self, now: int) -> list[Activation]:
        """Switch every pending version whose time has come (one transaction)."""
        with write_transaction(self.engine) as conn:
            return activate_due(conn, now, self.skew)

    def change_marker(self) -> tuple[str, str]:
        """What changes when secrets or apps change (not when audit records are appended):
        the applied bundle of each stream and the registered client ids."""
        from sqlalchemy import func

        streams = select(func.group_concat(schema.streams.c.bundle_id)).scalar_subquery()
        apps = select(func.group_concat(schema.apps.c.client_id)).scalar_subquery()
        with self.engine.connect() as conn:
            row = conn.execute(select(streams, apps)).one()
        return (str(row[0] or ""), str(row[1] or ""))

    def count_expiring(self, now: int, within: int) -> int:
        """How many secrets expire in ``[now, now + within)``."""
        from sqlalchemy import func

        t = schema.secrets
        query = select(func.count()).where(t.c.expires_at >= now, t.c.expires_at < now + within)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def iter_values(self) -> Iterator[tuple[str, bytes]]:
        """Every (path, value): only for tests and exports that need them, never logged."""
        with self.engine.connect() as conn:
            for row in conn.execute(select(schema.secrets.c.path, schema.secrets.c.value)):
                yield row.path, bytes(row.value)


class ReceivingStream:
    """The stream state of the store inside one write transaction (a
    :class:`relay.bundle.receive.StreamState`), and the write of one received bundle."""

    def __init__(self, conn: Connection, skew: int = 0) -> None:
        self.conn = conn
        self.skew = skew

    def high_water(self, sender_key: str, kind: str) -> HighWater | None:
        return _high_water(self.conn, sender_key, kind)

    def was_applied(self, bundle_id: str) -> bool:
        return _was_applied(self.conn, bundle_id)

    def apply(self, received: Received[SecretsPayload], now: int) -> ApplyResult:
        """Write a received secrets bundle and its high-water mark (same transaction)."""
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
        conn.execute(
            insert(schema.applied).values(
                bundle_id=bundle_id,
                sender_key=stream,
                kind=header.kind,
                seq=header.seq,
                applied_at=now,
            )
        )
        _set_meta(conn, "policies", json.dumps(payload.policies))  # freshness rules (§8.2)
        _set_meta(conn, "last_import", str(now))
        _set_meta(conn, "last_bundle_created", str(header.created))
        return ApplyResult(
            header.seq, written, gone, len(payload.secrets) - written, payload.audit_ack, activated
        )

    def applied_seq(self, stream_key: str, bundle_id: str) -> int | None:
        """The seq under which ``bundle_id`` was applied in the stream (a delta's base)."""
        t = schema.applied
        query = select(t.c.seq).where(t.c.bundle_id == bundle_id, t.c.sender_key == stream_key)
        row = self.conn.execute(query).first()
        return None if row is None else int(row.seq)


def _write_full(conn: Connection, payload: SecretsPayload, now: int, seq: int) -> _Written:
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


def _write_delta(conn: Connection, payload: SecretsPayload, now: int, seq: int) -> _Written:
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


def _versions_of(conn: Connection, paths: list[str]) -> dict[str, int]:
    """path -> stored version, for ``paths`` only (in chunks under SQLite's variable limit)."""
    found: dict[str, int] = {}
    for start in range(0, len(paths), _CHUNK):
        chunk = paths[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        found.update(fetch_all(conn, f"{_VERSIONS} WHERE path IN ({marks})", tuple(chunk)))
    return found


def _changed_rows(
    payload: SecretsPayload, current: dict[str, int], now: int, seq: int
) -> list[tuple[str, int, bytes, int | None, int, int]]:
    """The payload's rows whose version is not the stored one, with their values as bytes."""
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
    conn: Connection, updated: list[tuple[Any, ...]], held: dict[str, int], now: int
) -> None:
    """Queue an ``applied`` outcome for each path this bundle moved to a newer version."""
    reports = [(r[0], int(r[1]), held[r[0]], "applied") for r in updated if r[1] > held[r[0]]]
    if reports:
        from inner_agent.rotation_outbox import report_versions

        report_versions(sa_executor(conn), reports, now)


def _was_applied(conn: Connection, bundle_id: str) -> bool:
    t = schema.applied
    return conn.execute(select(t.c.seq).where(t.c.bundle_id == bundle_id)).first() is not None


def _high_water(conn: Connection, sender_key: str, kind: str) -> HighWater | None:
    t = schema.streams
    row = conn.execute(
        select(t.c.seq, t.c.bundle_id).where(t.c.sender_key == sender_key, t.c.kind == kind)
    ).first()
    return None if row is None else HighWater(row.seq, row.bundle_id)


def _set_high_water(
    conn: Connection, sender_key: str, kind: str, seq: int, bundle_id: str, now: int
) -> None:
    t = schema.streams
    values: dict[str, Any] = {"seq": seq, "bundle_id": bundle_id, "applied_at": now}
    done = conn.execute(
        update(t).where(t.c.sender_key == sender_key, t.c.kind == kind).values(**values)
    )
    if done.rowcount == 0:
        conn.execute(insert(t).values(sender_key=sender_key, kind=kind, **values))


def _set_meta(conn: Connection, key: str, value: str) -> None:
    done = conn.execute(update(schema.meta).where(schema.meta.c.key == key).values(value=value))
    if done.rowcount == 0:
        conn.execute(insert(schema.meta).values(key=key, value=value))
