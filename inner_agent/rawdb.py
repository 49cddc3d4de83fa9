"""The agent store through the raw SQLCipher driver, for paths that must start fast.

``relay agent get`` and the audit records it writes use this instead of SQLAlchemy (see
``docs/adr/0003-fast-get-path.md``). The schema is owned by :mod:`inner_agent.schema`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from relay import db
from relay.codes import BAD_STORE
from relay.errors import UsageError
from relay.home import Home


@contextmanager
def raw_connection(home: Home) -> Iterator[Any]:
    """An open sqlcipher3 connection to the home's store, autocommit (we issue BEGIN)."""
    import sqlcipher3

    conn = sqlcipher3.connect(str(home.store_path), isolation_level=None)
    try:
        conn.execute(f"PRAGMA key = \"x'{home.secrets.store_key.hex()}'\"")
        conn.execute("PRAGMA busy_timeout = 15000")
        conn.execute(f"PRAGMA synchronous = {db.SYNCHRONOUS}")
        try:
            conn.execute("SELECT count(*) FROM sqlite_master")
        except sqlcipher3.DatabaseError:
            raise UsageError(f"{home.store_path} cannot be opened", code=BAD_STORE) from None
        _ensure_schema(conn, home)
        yield conn
    finally:
        conn.close()


def _ensure_schema(conn: Any, home: Home) -> None:
    """One ``PRAGMA user_version`` read; the migration steps run only for an old store."""
    from inner_agent.migrations import STEPS
    from relay.store_version import ensure_current

    ensure_current(conn, home.store_path, home.secrets.store_key, STEPS)


def executor(conn: Any) -> Any:
    """``execute(sql, params) -> rows`` over a raw connection (``?`` placeholders)."""

    def execute(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return list(conn.execute(sql, tuple(params)).fetchall())

    return execute


@contextmanager
def immediate(conn: Any) -> Iterator[None]:
    """A write transaction on a raw connection: ``BEGIN IMMEDIATE`` … ``COMMIT``/``ROLLBACK``."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
