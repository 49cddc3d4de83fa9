"""Export passes of a fleet (outer_gateway/fleet.py, outer_gateway/export_view.py): grants
resolved once per pass, each agent exported once per period, the work divided between gateway
processes sharing one PostgreSQL store, and a killed process's claims taken over."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from outer_gateway.export import grant_patterns
from outer_gateway.export_view import ExportView, _match_sorted
from outer_gateway.fleet import CLAIM_BATCH, ExportPass, PassReport, audit_marks, period_end
from outer_gateway.store import GatewayStore
from relay.home import Home
from relay.paths import matches, matches_any
from relay.transport import TransportOptions, open_destination
from tests.children import child_env
from tests.fleet_kit import SECRETS_PER_AGENT, build_fleet, fleet_grants

EVERY = 3650 * 86400  # the tests' period: its next boundary is years away from any run
WEEK = 7 * 86400


def _pass(home_path: Path, now: int, out: Path, batch: int = 100) -> PassReport:
    home = Home.open(home_path, "gateway")
    store = GatewayStore.open(home)
    destination = open_destination(str(out), TransportOptions())
    try:
        return ExportPass(home, store, now, EVERY, WEEK, batch).run(destination, lambda _: None)
    finally:
        destination.close()
        store.close()


def _per_agent(folder: Path) -> Counter[str]:
    return Counter(p.name.split("-to-", 1)[1].split(".", 1)[0] for p in folder.glob("*.bundle"))


# -- grant resolution ------------------------------------------------------------------------


def test_resolution_by_prefix_grants_exactly_what_the_glob_grants() -> None:
    rnd = random.Random(14)
    segments = ["a", "ab", "b", "db", "db-1", "x.y", "z_z"]
    paths = sorted(
        {"/".join(rnd.choice(segments) for _ in range(rnd.randint(1, 4))) for _ in range(400)}
    )
    patterns = [
        "**", "a/**", "a/*", "ab*", "db/*/b", "db-*", "*/b", "a/**/b", "a?/b", "db", "x.y/**",
        "a/b*", "zz/**", "a/*/**", "d*/**",
    ]  # fmt: skip
    for pattern in patterns:
        want = [i for i, path in enumerate(paths) if matches(pattern, path)]
        assert _match_sorted(pattern, paths) == want, pattern


def test_a_pass_reads_the_store_once_and_builds_each_agents_granted_set(tmp_path: Path) -> None:
    build_fleet(tmp_path / "gw", 25, every="3650d")
    home = Home.open(tmp_path / "gw", "gateway")
    store = GatewayStore.open(home)
    try:
        view = ExportView(store, int(time.time()))
        paths = [row[0] for row in store.all_rows()]
        names = [f"a{index:05d}" for index in (0, 9, 10, 24)]
        with store.engine.connect() as conn:
            patterns = grant_patterns(conn, names)  # as a pass reads them for a batch
    finally:
        store.close()
    for index, name in zip((0, 9, 10, 24), names, strict=True):
        content = view.payload(patterns[name], 3)
        doc = json.loads(content.plaintext)
        granted = {p for p in paths if matches_any(fleet_grants(index), p)}
        assert {row[0] for row in doc["secrets"]} == granted
        assert content.secrets == SECRETS_PER_AGENT == len(granted)
        assert doc["ack"] == {"audit_seq": 3}


def test_audit_marks_stop_at_the_first_gap(tmp_path: Path) -> None:
    build_fleet(tmp_path / "gw", 3, every="3650d")
    store = GatewayStore.open(Home.open(tmp_path / "gw", "gateway"))
    try:
        with store.engine.begin() as conn:
            for agent, seq in [("a00000", 1), ("a00000", 2), ("a00000", 4), ("a00001", 2)]:
                conn.exec_driver_sql(
                    "INSERT INTO agent_audit (agent, seq, hash, prev_hash, type, time, record) "
                    "VALUES (?, ?, 'h', 'p', 't', 'x', '{}')",
                    (agent, seq),
                )
            marks = audit_marks(conn, ["a00000", "a00001", "a00002"])
    finally:
        store.close()
    assert marks == {"a00000": 2, "a00001": 0, "a00002": 0}


# -- periods on SQLCipher --------------------------------------------------------------------


def test_each_agent_is_exported_once_per_period(tmp_path: Path) -> None:
    build_fleet(tmp_path / "gw", 30, every="3650d")
    now = 1_800_000_000
    first = _pass(tmp_path / "gw", now, tmp_path / "p1", batch=7)
    assert sorted(d["agent"] for d in first.written) == [f"a{i:05d}" for i in range(30)]
    assert {d["seq"] for d in first.written} == {1}
    assert _per_agent(tmp_path / "p1") == Counter({f"a{i:05d}": 1 for i in range(30)})
    again = _pass(tmp_path / "gw", now + 60, tmp_path / "p1b")  # same period: nothing due
    assert again.written == [] and not (tmp_path / "p1b").exists()
    later = _pass(tmp_path / "gw", period_end(now, EVERY), tmp_path / "p2")  # the next one
    assert len(later.written) == 30 and {d["seq"] for d in later.written} == {2}


def test_a_batchs_files_are_named_and_reported_before_the_next_batch_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ADR 0026: a process killed during a pass leaves one batch's seqs at most spent without
    their files. Each batch's files are synced while the next batch is sealed, and named and
    reported before it commits (``export.sealed``: sealed, not committed)."""
    from relay import crashpoint

    build_fleet(tmp_path / "gw", 30, every="3650d")
    out = tmp_path / "out"
    reported: list[str] = []
    at_commits: list[tuple[int, int]] = []  # (reported, files named) as each batch commits
    real = crashpoint.reached

    def watched(stage: str) -> None:
        if stage == "export.sealed":
            at_commits.append((len(reported), len(list(out.glob("*.bundle")))))
        real(stage)

    monkeypatch.setattr(crashpoint, "reached", watched)
    home = Home.open(tmp_path / "gw", "gateway")
    store = GatewayStore.open(home)
    destination = open_destination(str(out), TransportOptions())
    try:
        runner = ExportPass(home, store, 1_800_000_000, EVERY, WEEK, batch=7)
        runner.run(destination, lambda done: reported.append(done["agent"]))
    finally:
        destination.close()
        store.close()
    assert at_commits == [(0, 0), (7, 7), (14, 14), (21, 21), (28, 28)]
    assert len(reported) == 30 and len(list(out.glob("*.bundle"))) == 30


def test_a_full_outbox_fails_the_pass_as_a_transport_error_and_loses_no_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch committed before the failed write has its seqs spent (its agents are exported
    in the next period, docs/crash-consistency.md); the agents not yet claimed are still due."""
    from relay.errors import TransportError

    def full(*_args: Any) -> int:
        raise OSError(28, os.strerror(28))  # ENOSPC

    build_fleet(tmp_path / "gw", 12, every="3650d")
    now = 1_800_000_000
    monkeypatch.setattr(os, "write", full)
    with pytest.raises(TransportError):
        _pass(tmp_path / "gw", now, tmp_path / "full", batch=5)
    monkeypatch.undo()
    assert list((tmp_path / "full").glob("*.bundle")) == []
    same = _pass(tmp_path / "gw", now + 60, tmp_path / "again", batch=5)
    assert sorted(d["agent"] for d in same.written) == [f"a{i:05d}" for i in range(5, 12)]
    later = _pass(tmp_path / "gw", period_end(now, EVERY), tmp_path / "next", batch=5)
    assert len(later.written) == 12


def test_a_revoked_or_ungranted_agent_is_not_exported(tmp_path: Path) -> None:
    from tests.conftest import run_relay

    build_fleet(tmp_path / "gw", 12, every="3650d")
    gw = str(tmp_path / "gw")
    assert run_relay("gateway", "agents", "revoke", "--home", gw, "a00003").status == 0
    for pattern in fleet_grants(5):
        assert run_relay("gateway", "revoke", "--home", gw, "a00005", pattern).status == 0
    report = _pass(tmp_path / "gw", 1_800_000_000, tmp_path / "out", batch=4)
    exported = sorted(d["agent"] for d in report.written)
    assert exported == [f"a{i:05d}" for i in range(12) if i not in (3, 5)]


def test_a_bundle_over_the_cap_is_that_agents_failure_only(tmp_path: Path) -> None:
    build_fleet(tmp_path / "gw", 5, every="3650d")
    home = Home.open(tmp_path / "gw", "gateway")
    store = GatewayStore.open(home)
    try:
        store.import_secrets({"agent/a00002/big": os.urandom(40_000).hex().encode()}, None, 1)
    finally:
        store.close()
    home.config.set("limits.max_bundle_bytes", "60000")
    home.config.save()
    report = _pass(tmp_path / "gw", 1_800_000_000, tmp_path / "out", batch=2)
    assert sorted(d["agent"] for d in report.written) == ["a00000", "a00001", "a00003", "a00004"]
    assert [(agent, code) for agent, code, _ in report.failed] == [("a00002", "too_large")]


# -- PostgreSQL: two gateway processes --------------------------------------------------------


def _run_once(gw: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "relay", "gateway", "run", "--once", "--home", str(gw)]
    piped = subprocess.PIPE
    return subprocess.Popen(argv, env=child_env(env), stdout=piped, stderr=piped)


def _exported_records(gw: Path) -> Counter[str]:
    store = GatewayStore.open(Home.open(gw, "gateway"))
    try:
        with store.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT record FROM audit_log").all()
    finally:
        store.close()
    records = [json.loads(r[0]) for r in rows]
    return Counter(r["fields"]["agent_name"] for r in records if r["type"] == "bundle.exported")


@pytest.mark.slow
def test_two_gateway_processes_share_the_fleet_each_agent_once(
    tmp_path: Path, database: str
) -> None:
    from tests.conftest import run_relay

    agents = 250
    gw = tmp_path / "gw"
    build_fleet(gw, agents, database, every="3650d")
    procs = [_run_once(gw), _run_once(gw)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
    everyone = Counter({f"a{i:05d}": 1 for i in range(agents)})
    assert _per_agent(gw / "out") == everyone  # none twice, none skipped
    assert _exported_records(gw) == everyone
    assert run_relay("gateway", "audit", "verify", "--home", str(gw)).status == 0


@pytest.mark.slow
def test_in_process_runners_on_separate_connections_divide_a_period(
    tmp_path: Path, database: str
) -> None:
    agents = 120
    gw = tmp_path / "gw"
    build_fleet(gw, agents, database, every="3650d")
    now = 1_800_000_000
    reports: list[PassReport] = []
    start = threading.Barrier(3)

    def worker(index: int) -> None:
        start.wait()
        reports.append(_pass(gw, now, tmp_path / f"out{index}", batch=5))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    exported = Counter(d["agent"] for r in reports for d in r.written)
    assert exported == Counter({f"a{i:05d}": 1 for i in range(agents)})


def _wait_for_no_other_session(database: str) -> None:
    """Until the server has ended the killed process's session (its locks released)."""
    import psycopg

    name = database.rsplit("/", 1)[1]
    deadline = time.monotonic() + 30
    with psycopg.connect(database.replace("+psycopg", ""), autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                "pg_backend_pid()",
                (name,),
            ).fetchone()
            if row is not None and row[0] == 0:
                return
            time.sleep(0.05)
    raise AssertionError("the killed process's session is still open")


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["export.sealed", "export.committed"])
def test_a_killed_workers_claims_are_taken_over(tmp_path: Path, database: str, stage: str) -> None:
    agents = CLAIM_BATCH + 30  # more than one batch
    gw = tmp_path / "gw"
    build_fleet(gw, agents, database, every="3650d")
    killed = _run_once(gw, {"RELAY_CRASH_AT": stage})
    killed.communicate(timeout=600)
    assert killed.returncode == -9
    _wait_for_no_other_session(database)
    assert not list((gw / "out").glob("*.bundle"))  # killed before writing any file
    now = int(time.time())
    same = _pass(gw, now, tmp_path / "same")
    after = Counter(d["agent"] for d in same.written)
    claimed_then_lost = {f"a{i:05d}" for i in range(CLAIM_BATCH)}
    everyone = {f"a{i:05d}" for i in range(agents)}
    if stage == "export.sealed":  # rolled back: nothing was claimed, the peer does it all
        assert after == Counter(dict.fromkeys(everyone, 1))
    else:  # committed: that batch is spent for this period, due again in the next
        assert after == Counter(dict.fromkeys(everyone - claimed_then_lost, 1))
    nxt = _pass(gw, period_end(now, EVERY), tmp_path / "next")
    assert Counter(d["agent"] for d in nxt.written) == Counter(dict.fromkeys(everyone, 1))
    seqs = {d["agent"]: d["seq"] for d in nxt.written}
    assert all(seqs[a] == 2 for a in everyone)  # a spent seq is never reused


# -- the pieces a pass is built of -----------------------------------------------------------


def test_append_many_continues_the_chain_as_append_does() -> None:
    import sqlite3

    from relay.audit import log
    from relay.audit.chain import verify_chain

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE audit_log (seq INTEGER PRIMARY KEY, hash, type, time, record)")

    def execute(sql: str, params: object) -> list[tuple[object, ...]]:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]

    log.append(execute, "gateway.started", {"period": 60})
    made = log.append_many(execute, [("bundle.exported", {"bundle_seq": i}) for i in range(250)])
    log.append(execute, "gateway.stopped", {})
    assert [r.seq for r in made] == list(range(2, 252))
    held = log.records_after(execute, 0)
    assert len(held) == 252 and verify_chain(held).ok
    assert log.append_many(execute, []) == []


def test_files_written_in_a_group_are_whole_private_and_leave_no_temp(tmp_path: Path) -> None:
    from relay.transport.folder import FolderDestination

    stale = tmp_path / "out" / ".old.bundle.0123456789ab.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"killed writer")
    os.utime(stale, (0, 0))
    destination = FolderDestination(tmp_path / "out")
    items = [(f"f{i:03d}.bundle", os.urandom(i * 37)) for i in range(40)]
    try:
        where = destination.put_many(items[:20]) + destination.put_many(items[20:])
    finally:
        destination.close()
    assert where == [str(tmp_path / "out" / name) for name, _ in items]
    for name, data in items:
        path = tmp_path / "out" / name
        assert path.read_bytes() == data and path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [n for n, _ in items]
    with pytest.raises(ValueError, match="unsafe"):
        FolderDestination(tmp_path / "out").put_many([("../x", b"")])


def _rows_read(plan: dict[str, Any], relation: str) -> int:
    """Rows the plan's nodes on ``relation`` produced and threw away (EXPLAIN ANALYZE, JSON)."""
    own = 0
    if plan.get("Relation Name") == relation:
        loops = int(plan.get("Actual Loops", 1))
        kept = int(plan.get("Actual Rows", 0)) + int(plan.get("Rows Removed by Filter", 0))
        own = kept * loops
    return own + sum(_rows_read(child, relation) for child in plan.get("Plans", []))


@pytest.mark.slow
def test_a_batch_reads_the_grants_of_the_agents_after_the_last_batch_only(
    tmp_path: Path, database: str
) -> None:
    """PostgreSQL carries the name bound of the due query to the grants only when the query says
    so: without it a merge join read the grants index from the first agent, for every batch."""
    import psycopg

    from outer_gateway.fleet import _DUE

    agents = 2000
    build_fleet(tmp_path / "gw", agents, database)
    after = f"a{agents // 4:05d}"  # where the planner chose the merge join (3,751 rows before)
    sql = "EXPLAIN (ANALYZE, FORMAT JSON) " + _DUE.replace("?", "%s") + " FOR UPDATE SKIP LOCKED"
    with psycopg.connect(database.replace("+psycopg", "")) as conn:
        (plan,) = conn.execute(sql, (2**40, after, after, CLAIM_BATCH)).fetchone()  # type: ignore[misc]
    read = _rows_read(plan[0]["Plan"], "grants")
    assert 0 < read <= (CLAIM_BATCH + 1) * len(fleet_grants(0))  # one batch's agents' grants


@pytest.mark.slow
def test_two_daemons_starting_together_on_a_new_store_both_serve(
    tmp_path: Path, database: str
) -> None:
    """Two ``relay gateway run`` services started at once on a new PostgreSQL store: each is
    ready and does its period, and the agents are divided between them. (APScheduler made its
    jobs table at first use; both ran CREATE TABLE and one died with ``internal:
    IntegrityError``, until the store made the table: revision 0008.)"""
    import signal

    from tests.agent_daemon import Notifications

    agents = 40
    gw = tmp_path / "gw"
    build_fleet(gw, agents, database, every="3650d")
    notified = [Notifications(tmp_path / f"gateway-{i}.notify") for i in range(2)]
    argv = [sys.executable, "-m", "relay", "gateway", "run", "--home", str(gw)]
    procs = [
        subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=child_env({"NOTIFY_SOCKET": str(n.path)}),
        )
        for n in notified
    ]
    try:
        for n, proc in zip(notified, procs, strict=True):
            done = n.wait_for(lambda ms: any(m.get("RELAY_PERIOD") == "1" for m in ms), 120)
            assert done, proc.poll() is None or proc.communicate()[1].decode()
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        errors = [proc.communicate(timeout=60)[1].decode() for proc in procs]
        for n in notified:
            n.close()
    assert [proc.returncode for proc in procs] == [0, 0], errors
    everyone = Counter({f"a{i:05d}": 1 for i in range(agents)})
    assert _per_agent(gw / "out") == everyone
    assert _exported_records(gw) == everyone
