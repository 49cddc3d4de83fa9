"""``relay.db.fetch_in``: one query per chunk of values, the same rows on SQLite (placeholders)
and on PostgreSQL (one array parameter), whatever the chunk boundaries; ``fetch_all``'s binary
rows are the text rows' values."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from relay.db import bulk_execute, fetch_all, fetch_in

NAMES = [f"a{i:03}" for i in range(23)]
SQL = "SELECT name, n FROM t WHERE {where} ORDER BY name"


def _loaded(engine: Engine) -> Engine:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (name VARCHAR(8) PRIMARY KEY, n INTEGER NOT NULL)")
        bulk_execute(conn, "INSERT INTO t VALUES (?, ?)", [(n, i) for i, n in enumerate(NAMES)])
    return engine


def _check(engine: Engine) -> None:
    wanted = [*NAMES[::2], "missing"]
    expected = [(name, NAMES.index(name)) for name in NAMES[::2]]
    with engine.begin() as conn:
        for chunk in (1, 5, 12, 500):
            assert sorted(fetch_in(conn, SQL, "name", wanted, chunk)) == expected
        assert fetch_in(conn, SQL, "name", []) == []


def test_fetch_in_on_sqlite() -> None:
    _check(_loaded(create_engine("sqlite://")))


@pytest.mark.slow
def test_fetch_in_on_postgresql(database: str) -> None:
    engine = _loaded(create_engine(database))
    try:
        _check(engine)
    finally:
        engine.dispose()


@pytest.mark.slow
def test_binary_rows_are_the_same_values(database: str) -> None:
    """The export view reads the secrets in binary form: every column type it reads (text,
    bigint, bytea, boolean, NULLs) comes back as the same Python value as in text form."""
    engine = create_engine(database)
    rows = [
        ("db/a", 1, b"\x00\xff sealed", 1_900_000_000, False),
        ("db/b", 2**40, None, None, True),
        ("\u00e9t\u00e9/c", 3, b"", 0, False),
    ]
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE s (path TEXT PRIMARY KEY, version BIGINT NOT NULL, value BYTEA, "
                "expires_at BIGINT, deleted BOOLEAN NOT NULL)"
            )
            bulk_execute(conn, "INSERT INTO s VALUES (?, ?, ?, ?, ?)", rows)
            sql = "SELECT path, version, value, expires_at, deleted FROM s ORDER BY version"
            driver: Any = conn.connection.driver_connection
            real, asked = driver.cursor, []

            def cursor(*args: Any, **kwargs: Any) -> Any:
                asked.append(bool(kwargs.get("binary")))
                return real(*args, **kwargs)

            driver.cursor = cursor
            text, binary = fetch_all(conn, sql), fetch_all(conn, sql, binary=True)
            driver.cursor = real
    finally:
        engine.dispose()
    assert asked == [False, True]  # the second read was in binary form
    assert binary == text == sorted(rows, key=lambda row: row[1])
    assert all(isinstance(row[2], bytes | None) and isinstance(row[4], bool) for row in binary)
