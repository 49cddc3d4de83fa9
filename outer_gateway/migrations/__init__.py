"""Schema versions of the gateway store, with Alembic (SQLCipher and PostgreSQL alike).

The revisions live in ``outer_gateway/migrations/versions/`` and ship in the package. ``0001`` is
the store of relay 0.1.0, which recorded no version: a store with tables but no
``alembic_version`` is taken as ``0001``. A new store gets today's tables
(:mod:`outer_gateway.schema`) and is stamped :data:`HEAD` in the same transaction.

Opening a store (:func:`prepare_store`) reads ``alembic_version`` (one small query; Alembic itself
is imported only when the store is not at :data:`HEAD`). An older store is migrated in one
transaction: on SQLCipher after a copy was written beside it (``store.db.v<REV>.bak``) under a
lock file; on PostgreSQL under a transaction-scoped advisory lock (take a ``pg_dump`` before an
upgrade: ``docs/upgrading.md``). A revision this relay does not know is ``store_too_new``.

To change the schema: change :mod:`outer_gateway.schema`, add
``versions/NNNN_what_it_does.py`` (copy the newest one: ``revision = "NNNN"``,
``down_revision`` = the previous head, ``upgrade()`` with ``alembic.op`` calls that both dialects
run) and set :data:`HEAD` to it. ``tests/test_migrations.py`` checks both.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from relay.codes import STORE_TOO_NEW
from relay.errors import UsageError
from relay.store_version import migration_lock, write_backup

if TYPE_CHECKING:
    from sqlalchemy import MetaData
    from sqlalchemy.engine import Connection, Engine

HEAD = "0008"
BASELINE = "0001"
_HERE = Path(__file__).parent
_PG_LOCK = 0x72656C6179  # pg_advisory_xact_lock key: "relay"


def prepare_store(engine: Engine, path: Path | None, key: bytes, metadata: MetaData) -> str:
    """Create, migrate or refuse the store behind ``engine``; returns the revision found
    (``""`` for a new store). ``path`` is the SQLCipher file, ``None`` on a database server."""
    with engine.connect() as conn:
        found = stored_revision(conn)
    if found == HEAD:
        return found
    if found and path is not None:
        _refuse_unknown(found)
        with migration_lock(path):
            with engine.connect() as conn:
                unchanged = stored_revision(conn) == found
                conn.rollback()  # ATTACH needs no open transaction
                if unchanged:
                    write_backup(conn.connection.driver_connection, path, key, found)
            _migrate(engine, metadata)
        return found
    _migrate(engine, metadata)
    return found


def stored_revision(conn: Connection) -> str:
    """The store's revision: ``alembic_version``, :data:`BASELINE` for an unstamped store with
    tables, ``""`` for an empty store."""
    from sqlalchemy import inspect, text

    inspector = inspect(conn)
    if inspector.has_table("alembic_version"):
        row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
        if row is not None:
            return str(row[0])
    return BASELINE if inspector.has_table("agents") else ""


def _migrate(engine: Engine, metadata: MetaData) -> None:
    """In one write transaction: re-read the revision, then create or upgrade."""
    from relay.db import write_transaction

    with write_transaction(engine) as conn:
        _lock_server(conn)
        found = stored_revision(conn)
        if found == HEAD:
            return
        if not found:
            metadata.create_all(conn)
            _run(conn, "stamp")
            return
        _refuse_unknown(found)
        _run(conn, "upgrade")


def _run(conn: Connection, action: str) -> None:
    """Alembic ``upgrade`` (or ``stamp``) to head on ``conn``, inside its open transaction."""
    from alembic.config import Config
    from alembic.runtime.environment import EnvironmentContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(_HERE))
    script = ScriptDirectory.from_config(config)

    def steps(rev: Any, _context: Any) -> Any:
        if action == "stamp":
            return script._stamp_revs("head", rev)
        return script._upgrade_revs("head", rev)

    with EnvironmentContext(config, script, fn=steps, destination_rev="head") as env:
        env.configure(connection=conn, transaction_per_migration=False)
        env.run_migrations()


def known_revisions() -> set[str]:
    """Every revision this relay ships."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(_HERE))
    return {rev.revision for rev in script.walk_revisions()}


def script_head() -> str:
    """The head of the shipped revisions (must equal :data:`HEAD`)."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory(str(_HERE)).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"gateway migrations have {len(heads)} heads: {heads}")
    return str(heads[0])


def _refuse_unknown(found: str) -> None:
    if found not in known_revisions():
        raise UsageError(
            f"the gateway store has schema revision {found!r}, which this relay does not know "
            f"(it knows up to {HEAD}): it was written by a newer relay; upgrade relay, or "
            "restore the backup made before the upgrade",
            code=STORE_TOO_NEW,
        )


def _lock_server(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK})")
