"""The audit tables both sides keep: ``relay.audit.tables`` on a real SQLite database."""

from __future__ import annotations

import pytest
from sqlalchemy import MetaData, create_engine, insert, inspect
from sqlalchemy.exc import IntegrityError

from relay.audit.tables import add_local_audit_tables, add_received_audit_tables


def test_the_local_chain_and_the_sink_cursors() -> None:
    metadata = MetaData()
    add_local_audit_tables(metadata)
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    names = inspect(engine).get_table_names()
    assert sorted(names) == ["audit_log", "sink_cursors"]
    log = metadata.tables["audit_log"]
    with engine.begin() as conn:
        conn.execute(insert(log).values(seq=1, hash="h", type="t", time="now", record="{}"))
        with pytest.raises(IntegrityError), conn.begin_nested():  # one record per seq
            conn.execute(insert(log).values(seq=1, hash="h2", type="t", time="n", record="{}"))


def test_received_records_are_unique_by_agent_and_seq() -> None:
    metadata = MetaData()
    add_received_audit_tables(metadata)
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    table = metadata.tables["agent_audit"]
    row = {"seq": 7, "hash": "h", "prev_hash": "p", "type": "t", "time": "n", "record": "{}"}
    with engine.begin() as conn:
        conn.execute(insert(table).values(agent="plant7", **row))
        conn.execute(insert(table).values(agent="plant8", **row))  # another agent's seq 7
        with pytest.raises(IntegrityError), conn.begin_nested():
            conn.execute(insert(table).values(agent="plant7", **row))
    indexes = inspect(engine).get_indexes("audit_bundles")
    assert [(i["name"], i["column_names"]) for i in indexes] == [
        ("audit_bundles_agent_head", ["agent", "head_seq"])
    ]
