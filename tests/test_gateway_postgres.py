"""The gateway store on a real PostgreSQL server (a gateway fleet): the same SQL as SQLCipher,
sealed values at rest, and seqs that concurrent gateway processes never hand out twice."""

from __future__ import annotations

import json
import secrets
import threading
from pathlib import Path

import psycopg

from outer_gateway.export import build_bundle
from outer_gateway.store import GatewayStore
from relay.home import Home
from tests.conftest import make_pair, run_relay


def test_gateway_on_postgres_exports_what_the_agent_reads(tmp_path: Path, database: str) -> None:
    pair = make_pair(tmp_path)
    assert pair.gateway("config", "set", "gateway.store_url", database).status == 0
    assert pair.gateway("enroll", str(pair.root / "ag.request")).status == 0
    planted = f"pg-planted-{secrets.token_hex(8)}".encode()
    pair.put("db/pw", planted)
    pair.put("db/pw", planted + b"-v2")
    (tmp_path / "bulk.json").write_text(json.dumps({"db/a": "1", "db/b": "2"}))
    assert pair.gateway("secret", "import", str(tmp_path / "bulk.json")).status == 0
    assert pair.gateway("secret", "rm", "db/a").status == 0
    assert pair.gateway("grant", "plant7", "db/*").status == 0
    listed = {
        s["path"]: s for s in json.loads(pair.gateway("secret", "list", "--json", "--all").out)
    }
    assert listed["db/pw"]["version"] == 2
    assert listed["db/a"]["deleted"] is True
    pair.export()
    assert pair.agent("import", str(pair.out)).status == 0
    assert pair.get("db/pw").stdout == planted + b"-v2\n"
    assert "not_found" in pair.get("db/a").err
    assert pair.get("db/b").stdout == b"2\n"
    # the server holds sealed values only
    with psycopg.connect(database.replace("+psycopg", "")) as conn:
        stored = [
            bytes(r[0]) for r in conn.execute("SELECT value FROM secrets WHERE value IS NOT NULL")
        ]
    assert stored
    assert all(planted not in value and value != b"2" for value in stored)


def test_concurrent_exports_never_share_a_seq(tmp_path: Path, database: str) -> None:
    gw = tmp_path / "gw"
    run_relay("gateway", "init", "--home", str(gw), "--name", "hq")
    run_relay("gateway", "config", "set", "--home", str(gw), "gateway.store_url", database)
    run_relay(
        "agent",
        "init",
        "--home",
        str(tmp_path / "ag"),
        "--name",
        "site",
        "--request-out",
        str(tmp_path / "req"),
    )
    assert run_relay("gateway", "enroll", "--home", str(gw), str(tmp_path / "req")).status == 0
    seqs: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        home = Home.open(gw, "gateway")
        store = GatewayStore.open(home)  # its own engine: like another gateway process
        agent = store.agent("site")
        for _ in range(10):
            bundle = build_bundle(home, store, agent, 1_800_000_000, 3600)
            with lock:
                seqs.append(bundle.seq)
        store.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seqs) == list(range(1, 41))
