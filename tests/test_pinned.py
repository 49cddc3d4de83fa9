"""Pinned identities in a store: ``relay.pinned`` over a real SQLite table."""

from __future__ import annotations

from sqlalchemy import MetaData, Table, create_engine, insert, select

from relay.identity import PublicIdentity
from relay.pinned import pinned_by_key_id, pinned_identity_columns


def test_pinned_rows_read_back_as_public_identities() -> None:
    metadata = MetaData()
    table = Table("trusted", metadata, *pinned_identity_columns())
    second = Table("other", metadata, *pinned_identity_columns())  # fresh columns each call
    assert [c.name for c in table.primary_key] == ["key_id"]
    assert second.c.key_id is not table.c.key_id
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    rows = [
        {
            "key_id": "k1",
            "role": "gateway",
            "name": "hq",
            "sign_public": b"s" * 32,
            "box_public": b"b" * 32,
        },
        {
            "key_id": "k2",
            "role": "agent",
            "name": "plant7",
            "sign_public": b"t" * 32,
            "box_public": b"c" * 32,
        },
    ]
    with engine.begin() as conn:
        conn.execute(insert(table), rows)
        pinned = pinned_by_key_id(conn.execute(select(table)))
    assert pinned == {
        "k1": PublicIdentity("gateway", "hq", b"s" * 32, b"b" * 32),
        "k2": PublicIdentity("agent", "plant7", b"t" * 32, b"c" * 32),
    }
    assert all(isinstance(p.sign_public, bytes) for p in pinned.values())
