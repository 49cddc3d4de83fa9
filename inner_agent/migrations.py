"""Schema steps of the agent store, applied by :mod:`relay.store_version`.

Version 1 is the store of relay 0.1.0 (``tests/fixtures/make_old_stores.py`` builds one). To
change the schema, change :mod:`inner_agent.schema` (what a new store gets) **and** append a
:class:`~relay.store_version.Step` here that turns the previous version into the new one, in
plain SQL on the raw connection (this module is imported by ``relay agent get``: no SQLAlchemy).
``tests/test_migrations.py`` checks that a migrated old store and a new store have the same
tables, columns and indexes.
"""

from __future__ import annotations

from typing import Any

from relay.store_version import Step, latest


def _index_applied_by_stream(conn: Any) -> None:
    # The importer asks "was seq N of this stream applied?"; `applied` grows with every bundle.
    conn.execute("CREATE INDEX IF NOT EXISTS applied_stream_seq ON applied (sender_key, kind, seq)")


_ROTATION_TABLES = (
    "CREATE TABLE IF NOT EXISTS secret_versions (path VARCHAR(256) NOT NULL, "
    "label VARCHAR(16) NOT NULL, version INTEGER NOT NULL, value BLOB NOT NULL, "
    "expires_at BIGINT, at BIGINT, overlap BIGINT, updated_at BIGINT NOT NULL, "
    "PRIMARY KEY (path, label))",
    "CREATE TABLE IF NOT EXISTS rotation_outbox (id VARCHAR(32) NOT NULL, seq BIGINT NOT NULL, "
    "body TEXT NOT NULL, created_at BIGINT NOT NULL, PRIMARY KEY (id))",
    "CREATE TABLE IF NOT EXISTS rotation_state (path VARCHAR(256) NOT NULL, "
    "state VARCHAR(16) NOT NULL, base INTEGER NOT NULL, version INTEGER, value BLOB, "
    "request_id VARCHAR(32), updated_at BIGINT NOT NULL, PRIMARY KEY (path))",
)


def _rotation_tables(conn: Any) -> None:
    # Labelled versions (previous, pending) and the rotation outbox and state (docs/rotation.md).
    for statement in _ROTATION_TABLES:
        conn.execute(statement)


STEPS: tuple[Step, ...] = (
    Step(2, "index applied bundles by stream and seq", _index_applied_by_stream),
    Step(3, "labelled versions and rotation state", _rotation_tables),
)

CURRENT = latest(STEPS)
