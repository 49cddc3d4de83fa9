"""Opening stores: SQLAlchemy engines on SQLCipher (embedded) or PostgreSQL (a gateway fleet).

SQLCipher is opened with a raw 256-bit key (``PRAGMA key = "x'…'"``), so no PBKDF2 runs at open
and ``relay agent get`` stays fast. Transactions on SQLite are explicit: reads begin ``DEFERRED``,
writes ``IMMEDIATE`` (so two importers serialise instead of failing at commit).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relay.codes import BAD_STORE
from relay.errors import UsageError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

BUSY_TIMEOUT_MS = 15000
# WAL with ``synchronous = FULL``: every commit is fsynced before it returns, so a committed
# gateway seq or agent high-water mark survives power loss (NORMAL may lose the newest commits;
# see docs/adr/0012-durable-commits.md). Read at connect time, so a benchmark can compare.
SYNCHRONOUS = "FULL"


def _pragmas() -> tuple[str, ...]:
    return (
        f"busy_timeout = {BUSY_TIMEOUT_MS}",
        "journal_mode = WAL",
        f"synchronous = {SYNCHRONOUS}",
        "secure_delete = ON",
        "foreign_keys = ON",
    )


def sqlcipher_connect(path: Path, key: bytes) -> Any:
    """A raw ``sqlcipher3`` connection to ``path`` (created 0600 if missing) with the pragmas of
    :func:`sqlcipher_engine`, in autocommit mode (``BEGIN`` is ours to issue), usable from any
    thread (one at a time). ``bad_store`` when the key does not open it."""
    import sqlcipher3

    if not path.exists():
        path.touch(mode=0o600)
    conn = sqlcipher3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        try:
            conn.execute("SELECT count(*) FROM sqlite_master")
        except sqlcipher3.DatabaseError:
            raise UsageError(
                f"{path} cannot be opened with this home's key (wrong key or not a relay store)",
                code=BAD_STORE,
            ) from None
        for pragma in _pragmas():
            conn.execute(f"PRAGMA {pragma}")
    except BaseException:
        conn.close()
        raise
    return conn


def sqlcipher_engine(path: Path, key: bytes) -> Engine:
    """An engine on the SQLCipher file ``path``, created 0600 if missing."""
    from sqlalchemy import URL, create_engine, event
    from sqlalchemy.exc import DatabaseError

    if not path.exists():
        path.touch(mode=0o600)
    url = URL.create("sqlite+pysqlcipher", password=f"x'{key.hex()}'", database=str(path))
    engine = create_engine(url, poolclass=_pool_class())

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        for pragma in _pragmas():
            dbapi_conn.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("relay_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT count(*) FROM sqlite_master")
    except DatabaseError:
        engine.dispose()
        raise UsageError(
            f"{path} cannot be opened with this home's key (wrong key or not a relay store)",
            code=BAD_STORE,
        ) from None
    return engine


def server_engine(url: str) -> Engine:
    """An engine on a database server (PostgreSQL), for a gateway fleet."""
    from sqlalchemy import create_engine

    return create_engine(url, pool_pre_ping=True)


def _pool_class() -> Any:
    from sqlalchemy.pool import QueuePool

    return QueuePool


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction: committed on success, rolled back on error."""
    with engine.connect() as plain:
        conn = plain.execution_options(relay_write=True)
        with conn.begin():
            yield conn


def _sqlite_driver(conn: Any) -> Any:
    """The DB-API connection under ``conn`` when it is SQLite: ``conn`` itself when it is
    already one (a raw ``sqlcipher3`` connection); ``None`` for another database."""
    dialect = getattr(conn, "dialect", None)
    if dialect is None:
        return conn
    if dialect.name != "sqlite":
        return None
    raw = conn.connection.driver_connection
    assert raw is not None  # noqa: S101 - an open connection always has one
    return raw


def bulk_execute(conn: Connection | Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run one parameterised statement for many rows, as close to the driver as possible.

    ``conn`` is a SQLAlchemy connection or a raw SQLCipher one. ``sql`` uses ``?`` placeholders.
    On SQLite this is the driver's own ``executemany`` in the current transaction (several times
    faster than the generic path); elsewhere the placeholders become the driver's paramstyle and
    SQLAlchemy's ``exec_driver_sql`` batches them.
    """
    if not rows:
        return
    raw = _sqlite_driver(conn)
    if raw is not None:
        raw.executemany(sql, rows)
        return
    conn.exec_driver_sql(sql.replace("?", "%s"), [tuple(r) for r in rows])


# psycopg's placeholder for a parameter sent in binary: an array of strings in text form is
# quoted and escaped element by element (a regular expression per element: ~70 ms for a hundred
# audit records), in binary it is copied as it is.
_ARRAY = "%b"


def is_postgresql(conn: Connection | Any) -> bool:
    """Whether ``conn`` (a SQLAlchemy connection or a raw SQLCipher one) is on PostgreSQL."""
    dialect = getattr(conn, "dialect", None)
    return dialect is not None and dialect.name == "postgresql"


def any_of(conn: Connection | Any, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """``column IN (values)`` as SQL (for :func:`fetch_all` and the like), and its parameters.

    On PostgreSQL one array parameter, sent in binary (``column = ANY(%b)``): the statement's
    text is the same whatever the number of values, so the driver converts it once and the
    server parses and plans it as a prepared statement, instead of a new statement of a hundred
    placeholders per batch. Elsewhere one ``?`` placeholder per value."""
    if is_postgresql(conn):
        return f"{column} = ANY({_ARRAY})", [list(values)]
    return f"{column} IN ({', '.join('?' * len(values))})", list(values)


def fetch_in(
    conn: Connection | Any, sql: str, column: str, values: Sequence[Any], chunk: int = 500
) -> list[tuple[Any, ...]]:
    """All rows of ``sql`` whose ``{where}`` stands for ``column IN (values)``: one query per
    ``chunk`` values (under SQLite's limit of variables), each as :func:`any_of` writes it."""
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(values), chunk):
        where, params = any_of(conn, column, values[start : start + chunk])
        rows += fetch_all(conn, sql.replace("{where}", where), params)
    return rows


def insert_rows(
    conn: Connection | Any,
    table: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[Any]],
) -> None:
    """Insert ``rows`` into ``table``; ``columns`` are (name, PostgreSQL type) in row order.

    On PostgreSQL one statement of one array per column (``INSERT ... SELECT * FROM unnest``):
    one round trip, one statement to parse and plan, however many rows. Elsewhere
    :func:`bulk_execute`."""
    if not rows:
        return
    names = ", ".join(name for name, _ in columns)
    if is_postgresql(conn):
        arrays = ", ".join(f"{_ARRAY}::{kind}[]" for _, kind in columns)
        sql = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays})"  # noqa: S608
        fetch_all(conn, sql, [list(column) for column in zip(*rows, strict=True)])
        return
    holes = ", ".join("?" * len(columns))
    bulk_execute(conn, f"INSERT INTO {table} ({names}) VALUES ({holes})", rows)  # noqa: S608


def fetch_all(
    conn: Connection | Any, sql: str, params: Sequence[Any] = (), binary: bool = False
) -> list[tuple[Any, ...]]:
    """All rows of one query as plain tuples, as close to the driver as possible.

    ``conn`` is a SQLAlchemy connection or a raw SQLCipher one. ``sql`` uses ``?``
    placeholders. On SQLite this is the driver's own cursor and ``fetchall`` in the current
    transaction: no per-row result processing, which costs several times the read itself on
    100k rows. Values come back as the driver gives them (a boolean column is 0 or 1).
    On PostgreSQL, inside a transaction SQLAlchemy began, it is psycopg's own cursor and
    ``fetchall`` (rows as tuples) in that transaction; otherwise SQLAlchemy runs the statement
    (and begins the transaction as it does for any statement). ``?`` placeholders become
    the driver's paramstyle. ``binary``: on PostgreSQL in a transaction, the rows come in
    binary form (the same Python values; for a large read of ``bytea`` and integers about half
    the client's CPU: no hex or decimal text to parse).
    """
    raw = _sqlite_driver(conn)
    if raw is not None:
        rows: list[tuple[Any, ...]] = raw.execute(sql, tuple(params)).fetchall()
        return rows
    if is_postgresql(conn) and conn.in_transaction():  # the driver's cursor, in that transaction
        driver: Any = conn.connection.driver_connection
        with driver.cursor(binary=binary) as cursor:
            cursor.execute(sql.replace("?", "%s"), tuple(params))
            if cursor.description is None:  # a statement that returns no rows
                return []
            found: list[tuple[Any, ...]] = cursor.fetchall()
            return found
    return [tuple(r) for r in conn.exec_driver_sql(sql.replace("?", "%s"), tuple(params))]


def sa_executor(conn: Connection | Any) -> Any:
    """``execute(sql, params) -> rows`` over a SQLAlchemy connection, ``?`` placeholders on every
    dialect (the shape :mod:`relay.audit.log` works with); over a raw SQLCipher connection (the
    agent's receive transaction) the driver's own ``execute``."""
    if getattr(conn, "dialect", None) is None:
        raw: Any = conn

        def execute_raw(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
            return list(raw.execute(sql, tuple(params)).fetchall())

        return execute_raw
    sqlite = conn.dialect.name == "sqlite"

    def execute(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        result = conn.exec_driver_sql(sql if sqlite else sql.replace("?", "%s"), tuple(params))
        return [tuple(row) for row in result] if result.returns_rows else []

    return execute
