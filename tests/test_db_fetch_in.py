"""``relay.db.fetch_in``: one query per chunk of values, the same rows on SQLite (placeholders)
and on PostgreSQL (one array parameter), whatever the chunk boundaries."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from relay.db import bulk_execute, fetch_in

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
