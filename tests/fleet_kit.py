"""A fleet for tests and benchmarks: many agents, overlapping grants, built with bulk inserts.

Agent ``index`` is named ``aNNNNN`` and granted ``common/**`` (40 secrets shared by all),
``region/rNN/**`` (30, shared by every 100th agent), ``site/gNNNN/*`` and ``site/gNNNN/db-*``
(20, shared by 10 agents in a row; the second pattern overlaps the first) and
``agent/aNNNNN/**`` (10 of its own): 100 secrets each from five overlapping grants.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

COMMON, REGIONS, PER_REGION, PER_SITE, SITE_SIZE, OWN = 40, 100, 30, 20, 10, 10
SECRETS_PER_AGENT = COMMON + PER_REGION + PER_SITE + OWN


def fleet_grants(index: int) -> list[str]:
    """The five grant patterns of agent ``index``."""
    site = index // SITE_SIZE
    return [
        "common/**",
        f"region/r{index % REGIONS:02d}/**",
        f"site/g{site:04d}/*",
        f"site/g{site:04d}/db-*",
        f"agent/a{index:05d}/**",
    ]


def fleet_values(agents: int) -> dict[str, bytes]:
    """Every secret the fleet's grants reach: 100 per agent, shared as the module says."""
    values: dict[str, bytes] = {}
    rnd = os.urandom

    def put(path: str) -> None:
        values[path] = rnd(24).hex().encode()

    for i in range(COMMON):
        put(f"common/c{i:02d}")
    for region in range(REGIONS):
        for i in range(PER_REGION):
            put(f"region/r{region:02d}/s{i:02d}")
    for site in range((agents + SITE_SIZE - 1) // SITE_SIZE):
        for i in range(PER_SITE):
            put(f"site/g{site:04d}/{'db' if i < 5 else 'app'}-{i:02d}")
    for index in range(agents):
        for i in range(OWN):
            put(f"agent/a{index:05d}/k{i}")
    return values


def build_fleet(home_path: Path, agents: int, store_url: str = "", every: str = "1d") -> None:
    """A gateway home with ``agents`` enrolled agents, their grants and secrets (bulk inserts),
    exporting to ``home_path/out`` every ``every``."""
    from nacl.public import PrivateKey
    from nacl.signing import SigningKey

    from outer_gateway.store import GatewayStore
    from relay import crypto
    from relay.db import bulk_execute, write_transaction
    from relay.home import Home

    home = Home.create(home_path, "gateway", "hq")
    home.config.set("export.to", str(home_path / "out"))
    home.config.set("export.every", every)
    if store_url:
        home.config.set("gateway.store_url", store_url)
    home.config.save()
    home = Home.open(home_path, "gateway")
    store = GatewayStore.open(home)
    now = int(time.time())
    try:
        rows, grants = [], []
        for index in range(agents):
            sign = bytes(SigningKey(os.urandom(32)).verify_key)
            box = bytes(PrivateKey(os.urandom(32)).public_key)
            name = f"a{index:05d}"
            rows.append((name, crypto.key_id(sign, box), sign, box, now, 0))
            grants.extend((name, pattern) for pattern in fleet_grants(index))
        with write_transaction(store.engine) as conn:
            bulk_execute(
                conn,
                "INSERT INTO agents (name, key_id, sign_public, box_public, enrolled_at, "
                "last_seq) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            bulk_execute(conn, "INSERT INTO grants (agent, pattern) VALUES (?, ?)", grants)
        store.import_secrets(fleet_values(agents), None, now)
        if store.engine.dialect.name == "postgresql":
            # Statistics, as autovacuum would gather after a bulk load: without them the
            # planner scans every grant for each claimed batch (ADR 0016).
            with store.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    finally:
        store.close()
