"""Schema steps of the hop store, applied by :mod:`relay.store_version` (version 1 is the store
of relay 0.1.0). Add a :class:`~relay.store_version.Step` here with every change to
:mod:`relay.hop.store`'s tables, as for the agent (:mod:`inner_agent.migrations`): plain SQL on
the raw connection."""

from __future__ import annotations

from typing import Any

from relay.store_version import Step, latest

_GATEWAY_ROOT_TABLES = (
    "CREATE TABLE IF NOT EXISTS gateway_roots (gateway VARCHAR(63) NOT NULL, "
    "version BIGINT NOT NULL, root_key BLOB NOT NULL, accepted_at BIGINT NOT NULL, "
    "PRIMARY KEY (gateway, version))",
    "CREATE TABLE IF NOT EXISTS revoked_keys (gateway VARCHAR(63) NOT NULL, "
    "key_id VARCHAR(16) NOT NULL, serial BIGINT NOT NULL, received_at BIGINT NOT NULL, "
    "PRIMARY KEY (gateway, key_id))",
    "CREATE TABLE IF NOT EXISTS certified (gateway VARCHAR(63) NOT NULL, "
    "serial BIGINT NOT NULL, key_id VARCHAR(16) NOT NULL, sign_public BLOB NOT NULL, "
    "box_public BLOB NOT NULL, PRIMARY KEY (gateway))",
)


def _gateway_roots(conn: Any) -> None:
    # Gateways trusted by their root (spec §15): roots, revocations, the certified online key.
    # Keys pinned before (table pinned) stay trusted as they were.
    for statement in _GATEWAY_ROOT_TABLES:
        conn.execute(statement)


def _meta(conn: Any) -> None:
    # Small named values of the hop: the persisted time floor (relay.trust.clock).
    conn.execute(
        "CREATE TABLE IF NOT EXISTS meta (key VARCHAR(64) NOT NULL PRIMARY KEY, "
        "value VARCHAR(255) NOT NULL)"
    )


STEPS: tuple[Step, ...] = (
    Step(2, "gateway roots, revocations, certified keys", _gateway_roots),
    Step(3, "meta: the time floor", _meta),
)

CURRENT = latest(STEPS)
