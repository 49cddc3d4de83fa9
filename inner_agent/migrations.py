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
    conn.execute(
        "CREATE INDEX IF NOT EXISTS applied_stream_seq ON applied (sender_key, kind, seq)"
    )


STEPS: tuple[Step, ...] = (
    Step(2, "index applied bundles by stream and seq", _index_applied_by_stream),
)

CURRENT = latest(STEPS)
