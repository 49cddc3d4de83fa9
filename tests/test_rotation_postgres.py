"""Rotation on a gateway whose store is PostgreSQL (throwaway database on the real server):
labelled versions sealed at rest, policies, and the APScheduler job store in the same database."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import psycopg

from outer_gateway.rotation import rotate_due
from outer_gateway.rotation_schedule import TABLE, RotationSchedule
from outer_gateway.store import GatewayStore
from relay.home import Home
from tests.conftest import make_pair, run_relay

DAY = 86400


def test_rotation_on_postgres(tmp_path: Path, database: str) -> None:
    pair = make_pair(tmp_path)
    assert pair.gateway("config", "set", "gateway.store_url", database).status == 0
    assert pair.gateway("enroll", str(pair.root / "ag.request")).status == 0
    assert pair.gateway("grant", "plant7", "db/**").status == 0
    planted = f"PLANTED-pg-{secrets.token_hex(8)}".encode()
    staged = f"PLANTED-pg-staged-{secrets.token_hex(8)}".encode()
    pair.put("db/pw", planted)
    result = run_relay(
        "gateway", "secret", "put", "--home", str(pair.gw), "db/pw", "-",
        "--activates-at", "2h", stdin=staged,
    )  # fmt: skip
    assert result.status == 0, result.err
    assert pair.gateway("policy", "set", "db/**", "--rotate-every", "1d").status == 0
    (bundle,) = pair.export()
    assert pair.agent("import", str(bundle)).status == 0
    pending = run_relay("agent", "get", "--home", str(pair.ag), "--version", "pending", "db/pw")
    assert pending.stdout == staged + b"\n"
    assert pair.gateway("rotate", "db/pw").status == 0  # supersedes the staged one: version 3
    listed = json.loads(pair.gateway("secret", "list", "--json").out)
    assert listed[0]["version"] == 3 and listed[0]["previous"]["version"] == 1
    with psycopg.connect(database.replace("+psycopg", "")) as conn:
        held = [bytes(r[0]) for r in conn.execute("SELECT value FROM secret_versions")]
    assert held and all(planted not in v for v in held)  # sealed at rest, previous included

    home = Home.open(pair.gw, "gateway")
    store = GatewayStore.open(home)
    t0 = max(s.updated_at for s in store.list_secrets())
    schedule = RotationSchedule(store)
    schedule.sync(t0)
    assert schedule.run_due(t0 + DAY, lambda p, now: rotate_due(home, store, p, now)) == ["db/**"]
    schedule.close()
    with psycopg.connect(database.replace("+psycopg", "")) as conn:
        jobs = conn.execute(f"SELECT id, next_run_time FROM {TABLE}").fetchall()  # noqa: S608
    assert [(j[0], int(j[1])) for j in jobs] == [("rotate:db/**", t0 + 2 * DAY)]
    assert [s.version for s in store.list_secrets()] == [4]
    store.close()


def test_reports_and_bulk_versions_on_postgres(tmp_path: Path, database: str) -> None:
    from inner_agent.rotation_outbox import queue

    pair = make_pair(tmp_path)
    assert pair.gateway("config", "set", "gateway.store_url", database).status == 0
    assert pair.gateway("enroll", str(pair.root / "ag.request")).status == 0
    assert pair.gateway("grant", "plant7", "db/**").status == 0
    pair.put("db/pw", b"PLANTED-pg-first")
    bulk = pair.root / "bulk.json"
    bulk.write_text(json.dumps({"db/pw": "PLANTED-pg-bulk"}))
    assert pair.gateway("secret", "import", str(bulk)).status == 0
    listed = json.loads(pair.gateway("secret", "list", "--json").out)
    assert listed[0]["version"] == 2 and listed[0]["previous"]["version"] == 1
    agent = Home.open(pair.ag, "agent")
    for version in range(1, 26):
        fields = {"path": "db/pw", "version": version, "hook": "reload", "result": "ok", "exit": 0}
        queue(agent, "rotation.hook", fields, {"kind": "hook", **fields}, 1)
    back = pair.root / "back"
    assert pair.agent("audit", "export", "--to", str(back)).status == 0
    imported = pair.gateway("import", str(back))
    assert imported.status == 0, imported.err
    rows = json.loads(pair.gateway("rotation", "status", "--json").out)
    assert sorted(r["version"] for r in rows) == list(range(6, 26))  # the 20 newest
    assert {(r["hook"], r["status"], r["exit_status"]) for r in rows} == {("reload", "ok", 0)}
