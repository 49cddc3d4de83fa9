"""Schema versions of the embedded SQLCipher stores, and the safe way to upgrade one.

Every store records the version of its schema. The agent's and the hop's stores keep it in
SQLite's ``PRAGMA user_version`` (one read in the database header, so ``relay agent get`` pays
nothing for it); the gateway's store keeps Alembic's ``alembic_version`` table
(:mod:`outer_gateway.migrations`), and uses the backup and lock helpers here.

A store made before versions were recorded has ``user_version`` 0 and tables: that is version 1,
the schema of relay 0.1.0. A store with no tables is new: its owner creates the current schema
and stamps it.

Upgrading (:func:`upgrade`) runs under an exclusive lock file beside the store, so two processes
opening an old store at once migrate it once:

1. a consistent encrypted copy is written beside the store, ``store.db.v<OLD>.bak`` (same key),
   to a temporary name first, then renamed into place;
2. every step from the old version to the current one runs in one ``BEGIN IMMEDIATE``
   transaction, which also sets the new ``user_version``; any failure rolls all of it back.

A process killed at any point leaves the store at the old version or the new one (SQLite's
journal), and once step 2 has begun, the backup is complete on disk.

Steps are raw SQL on the DB-API connection (no SQLAlchemy: the agent's fast path imports this).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relay.codes import STORE_TOO_NEW
from relay.errors import UsageError
from relay.frozen import frozen

if TYPE_CHECKING:
    from sqlalchemy import MetaData
    from sqlalchemy.engine import Engine

FRESH = 0  # no tables yet: the owner creates the current schema


@frozen
class Step:
    """One schema change: it turns a store of version ``version - 1`` into ``version``.

    ``run`` gets the raw DB-API connection inside the migration's transaction; it must not
    commit. Write it against the tables as they were at ``version - 1`` (plain SQL), never
    against today's SQLAlchemy tables.
    """

    version: int
    summary: str
    run: Callable[[Any], None]


def latest(steps: Sequence[Step]) -> int:
    """The version a store has after every step (1 when there are none)."""
    for index, step in enumerate(steps):
        if step.version != index + 2:
            raise RuntimeError(f"migration steps out of order at {step.summary!r}")
    return len(steps) + 1


def read_version(conn: Any) -> int:
    """The store's schema version: ``user_version``, or 1 for an unstamped store with tables,
    or :data:`FRESH` for a store with no tables."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version:
        return version
    tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
    return 1 if tables[0] else FRESH


def stamp(conn: Any, version: int) -> None:
    """Record ``version`` (for a store just created with the current schema)."""
    conn.execute(f"PRAGMA user_version = {int(version)}")


def refuse_newer(version: int, current: int, path: Path) -> None:
    """``store_too_new`` when ``version`` was written by a newer relay."""
    if version > current:
        raise UsageError(
            f"{path} has schema version {version}, newer than this relay knows ({current}); "
            "upgrade relay, or restore the backup made before the upgrade",
            code=STORE_TOO_NEW,
        )


def ensure_current(conn: Any, path: Path, key: bytes, steps: Sequence[Step]) -> int:
    """Bring the open store ``conn`` (at ``path``, SQLCipher key ``key``) to the current version.

    Returns the version found (:data:`FRESH` for an empty store, which is left alone)."""
    current = latest(steps)
    found = read_version(conn)
    if found in (FRESH, current):
        return found
    refuse_newer(found, current, path)
    upgrade(conn, path, key, steps)
    return found


def prepare_engine(
    engine: Engine, path: Path, key: bytes, steps: Sequence[Step], metadata: MetaData
) -> None:
    """Make the store behind ``engine`` current: create and stamp a new one (in one write
    transaction), migrate an old one, refuse a newer one."""
    from relay.db import write_transaction

    with engine.connect() as conn:
        found = ensure_current(conn.connection.driver_connection, path, key, steps)
    if found != FRESH:
        return
    with write_transaction(engine) as conn:
        if read_version(conn.connection.driver_connection) == FRESH:
            metadata.create_all(conn)
            stamp(conn.connection.driver_connection, latest(steps))


def upgrade(conn: Any, path: Path, key: bytes, steps: Sequence[Step]) -> None:
    """Back up, then migrate in one transaction (see the module docstring)."""
    current = latest(steps)
    with migration_lock(path):
        found = read_version(conn)  # another process may have done it meanwhile
        if found in (FRESH, current):
            return
        refuse_newer(found, current, path)
        write_backup(conn, path, key, str(found))
        conn.execute("BEGIN IMMEDIATE")
        try:
            for step in steps[found - 1 :]:
                step.run(conn)
            stamp(conn, current)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def backup_path(path: Path, version: str) -> Path:
    """Where the copy made before migrating from ``version`` is kept."""
    return path.with_name(f"{path.name}.v{version}.bak")


def write_backup(conn: Any, path: Path, key: bytes, version: str) -> Path:
    """A consistent copy of the store, encrypted with the same key, beside it (0600).

    ``conn`` is a raw SQLCipher connection outside any transaction (``ATTACH`` needs that)."""
    target = backup_path(path, version)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    partial.touch(mode=0o600)
    conn.execute(f"ATTACH DATABASE ? AS relay_backup KEY \"x'{key.hex()}'\"", (str(partial),))
    try:
        conn.execute("SELECT sqlcipher_export('relay_backup')")
        # sqlcipher_export copies tables and rows, not the schema version: carry it over, or
        # the copy would be migrated again from the start when it is opened.
        (version,) = conn.execute("PRAGMA main.user_version").fetchone()
        conn.execute(f"PRAGMA relay_backup.user_version = {int(version)}")
    finally:
        conn.execute("DETACH DATABASE relay_backup")
    _fsync(partial)
    partial.replace(target)
    _fsync_dir(target.parent)
    return target


@contextmanager
def migration_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``<store>.migrate.lock``, held while a migration runs."""
    lock = path.with_name(path.name + ".migrate.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
