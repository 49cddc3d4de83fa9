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
