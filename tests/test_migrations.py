"""Schema versions and upgrades: stores in the format of relay 0.1.0 (``tests/fixtures/v1``, made
by ``tests/fixtures/make_old_stores.py``) open in today's relay with nothing lost, a backup
beside them, and a newer store is refused."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import sqlcipher3

from inner_agent import migrations as agent_migrations
from inner_agent import schema as agent_schema
from inner_agent.store import AgentStore
from outer_gateway import migrations as gateway_migrations
from outer_gateway.store import GatewayStore
from relay.home import Home
from relay.hop import migrations as hop_migrations
from relay.hop.store import HopStore
from relay.store_version import backup_path, read_version
from tests.conftest import run_process, run_relay

pytestmark = pytest.mark.slow  # real processes, servers or stores: seconds each

FIXTURES = Path(__file__).parent / "fixtures" / "v1"
V1_TABLES = {
    "agent": (
        "applied",
        "apps",
        "audit_log",
        "meta",
        "secrets",
        "sink_cursors",
        "streams",
        "trusted",
    ),
    "gateway": (
        "agent_audit",
        "agents",
        "audit_bundles",
        "audit_log",
        "meta",
        "secrets",
        "sink_cursors",
        "grants",
    ),
    "hop": ("audit_log", "forwarded", "pinned", "sink_cursors"),
}


def old_home(tmp_path: Path, side: str) -> Home:
    """A private copy of the v1 fixture home of ``side``."""
    target = tmp_path / side
    shutil.copytree(FIXTURES / side, target)
    target.chmod(0o700)
    for child in target.iterdir():
        child.chmod(0o600)
    return Home.open(target, side)


def raw(home: Home, path: Path | None = None) -> Any:
    conn = sqlcipher3.connect(str(path or home.store_path), isolation_level=None)
    conn.execute(f"PRAGMA key = \"x'{home.secrets.store_key.hex()}'\"")
    return conn


def v1_rows(conn: Any, side: str, v1: Any = None) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every v1 table, in the v1 columns (those of the store ``v1``), sorted."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    for table in V1_TABLES[side]:
        columns = [c[1] for c in (v1 or conn).execute(f"PRAGMA table_info({table})")]
        query = f"SELECT {', '.join(columns)} FROM {table}"  # noqa: S608 - fixed names
        rows[table] = sorted(conn.execute(query).fetchall())
        assert rows[table] or table in ("sink_cursors", "meta"), table
    return rows


def shape(conn: Any) -> dict[str, Any]:
    """Tables, their columns and indexes: what a migrated store and a new one must share."""
    out: dict[str, Any] = {}
    names = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    for (table,) in names:
        columns = sorted(
            (c[1], c[2].upper(), c[3], c[5]) for c in conn.execute(f"PRAGMA table_info({table})")
        )
        indexes = sorted(
            (
                i[1] if not i[1].startswith("sqlite_autoindex") else "auto",
                i[2],
                tuple(x[2] for x in conn.execute(f"PRAGMA index_info('{i[1]}')")),
            )
            for i in conn.execute(f"PRAGMA index_list({table})")
        )
        out[table] = (columns, indexes)
    return out


def test_agent_store_migrates_with_a_backup_and_loses_nothing(tmp_path: Path) -> None:
    home = old_home(tmp_path, "agent")
    before = v1_rows(raw(home), "agent")
    assert read_version(raw(home)) == 1
    AgentStore.open(home).close()
    after = raw(home)
    assert read_version(after) == agent_migrations.CURRENT
    assert v1_rows(after, "agent") == before
    backup = backup_path(home.store_path, "1")
    assert backup.stat().st_mode & 0o777 == 0o600
    kept = raw(home, backup)
    assert read_version(kept) == 1
    assert v1_rows(kept, "agent") == before


@pytest.mark.slow  # starts a relay process
def test_the_fast_get_path_migrates_an_old_agent_store(tmp_path: Path) -> None:
    home = old_home(tmp_path, "agent")
    got = run_process("agent", "get", "--home", str(home.path), "db/plant7/password")
    assert got.status == 0, got.err
    assert got.stdout.rstrip(b"\n") == b"fixture-password-v2"
    assert read_version(raw(home)) == agent_migrations.CURRENT
    assert backup_path(home.store_path, "1").exists()


def test_gateway_store_migrates_with_alembic_and_loses_nothing(tmp_path: Path) -> None:
    home = old_home(tmp_path, "gateway")
    before = v1_rows(raw(home), "gateway")
    GatewayStore.open(home).close()
    after = raw(home)
    assert after.execute("SELECT version_num FROM alembic_version").fetchall() == [
        (gateway_migrations.HEAD,)
    ]
    assert after.execute("SELECT DISTINCT changed FROM secrets").fetchall() == [(0,)]
    kept = raw(home, backup_path(home.store_path, gateway_migrations.BASELINE))
    assert v1_rows(after, "gateway", kept) == before
    assert v1_rows(kept, "gateway") == before
    listed = run_relay("gateway", "secret", "list", "--home", str(home.path))
    assert listed.status == 0, listed.err
    assert "db/plant7/password" in listed.out


def test_hop_store_opens_with_nothing_lost(tmp_path: Path) -> None:
    home = old_home(tmp_path, "hop")
    before = v1_rows(raw(home), "hop")
    store = HopStore.open(home)
    assert len(store.senders()) == 2
    store.close()
    assert read_version(raw(home)) == hop_migrations.CURRENT
    assert v1_rows(raw(home), "hop") == before


@pytest.mark.parametrize("side", ["agent", "gateway", "hop"])
def test_a_migrated_store_has_the_shape_of_a_new_one(tmp_path: Path, side: str) -> None:
    """Fails when a schema change has no migration step (or a step no schema change)."""
    opener = {"agent": AgentStore.open, "gateway": GatewayStore.open, "hop": HopStore.open}[side]
    old = old_home(tmp_path / "old", side)
    opener(old).close()
    new = Home.create(tmp_path / "new" / side, side, "fresh")
    opener(new).close()
    assert shape(raw(old)) == shape(raw(new))
    assert read_version(raw(old)) == read_version(raw(new))


def test_gateway_head_constant_matches_the_shipped_revisions() -> None:
    assert gateway_migrations.script_head() == gateway_migrations.HEAD
    assert len(agent_migrations.STEPS) + 1 == agent_migrations.CURRENT
    assert "applied_stream_seq" in {i.name for i in agent_schema.applied.indexes}


@pytest.mark.slow  # starts a relay process
def test_a_newer_agent_store_is_refused_with_one_line(tmp_path: Path) -> None:
    home = old_home(tmp_path, "agent")
    raw(home).execute(f"PRAGMA user_version = {agent_migrations.CURRENT + 1}")
    for args in (("get", "db/plant7/password"), ("secret", "list")):
        result = run_process("agent", *args, "--home", str(home.path))
        assert result.status == 2
        assert result.err.startswith("relay: error: store_too_new: ")
        assert result.err.count("\n") == 1
    assert not backup_path(home.store_path, str(agent_migrations.CURRENT + 1)).exists()


@pytest.mark.slow  # starts a relay process
def test_a_newer_gateway_store_is_refused_with_one_line(tmp_path: Path) -> None:
    home = old_home(tmp_path, "gateway")
    GatewayStore.open(home).close()
    raw(home).execute("UPDATE alembic_version SET version_num = '9999'")
    result = run_process("gateway", "secret", "list", "--home", str(home.path))
    assert result.status == 2
    assert result.err.startswith("relay: error: store_too_new: ")
    assert result.err.count("\n") == 1


_KILLED_MID_MIGRATION = """
import sys
from pathlib import Path
from inner_agent import migrations
from relay.home import Home
from relay.store_version import Step, ensure_current
import sqlcipher3

def hang(conn):
    for step in migrations.STEPS:
        step.run(conn)
    conn.execute("UPDATE secrets SET value = x'00'")  # proves nothing of this survives
    print("in-transaction", flush=True)
    sys.stdin.read()

home = Home.open(Path(sys.argv[1]), "agent")
conn = sqlcipher3.connect(str(home.store_path), isolation_level=None)
conn.execute(f"PRAGMA key = \\"x'{home.secrets.store_key.hex()}'\\"")
ensure_current(conn, home.store_path, home.secrets.store_key, [Step(2, "hang", hang)])
"""


@pytest.mark.slow  # starts a relay process
def test_a_migration_killed_midway_leaves_the_old_version_and_the_backup(tmp_path: Path) -> None:
    home = old_home(tmp_path, "agent")
    before = v1_rows(raw(home), "agent")
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_KILLED_MID_MIGRATION), str(home.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"in-transaction\n"  # the event: the step is running
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert read_version(raw(home)) == 1
    assert v1_rows(raw(home), "agent") == before
    assert v1_rows(raw(home, backup_path(home.store_path, "1")), "agent") == before
    AgentStore.open(home).close()  # the next start migrates for real
    assert read_version(raw(home)) == agent_migrations.CURRENT
    assert v1_rows(raw(home), "agent") == before


def test_a_new_gateway_feeds_an_old_format_agent(tmp_path: Path) -> None:
    """The rollout order of docs/upgrading.md: the gateway is upgraded first, its bundles are
    still read by an agent whose store is in the old format (the bundle format is unchanged)."""
    gw = old_home(tmp_path, "gateway")
    ag = old_home(tmp_path, "agent")
    put = run_relay(
        "gateway",
        "secret",
        "put",
        "--home",
        str(gw.path),
        "db/plant7/password",
        "-",
        stdin=b"rolled-out-value",
    )
    assert put.status == 0, put.err
    out = tmp_path / "out"
    exported = run_relay("gateway", "export", "--home", str(gw.path), "--to", str(out))
    assert exported.status == 0, exported.err
    assert read_version(raw(ag)) == 1
    imported = run_relay("agent", "import", "--home", str(ag.path), str(out))
    assert imported.status == 0, imported.err
    for path, value in (
        ("db/plant7/password", b"rolled-out-value"),
        ("api/token", b"fixture-token"),
    ):
        got = run_relay("agent", "get", "--home", str(ag.path), path)
        assert got.stdout.rstrip(b"\n") == value
    with raw(ag) as conn:
        assert conn.execute("SELECT seq FROM streams").fetchall() == [(4,)]


@pytest.mark.slow  # needs the PostgreSQL server
def test_postgres_gateway_store_is_migrated_and_stamped(request: pytest.FixtureRequest) -> None:
    """A 0.1.0 gateway database on PostgreSQL (tables, no ``alembic_version``) is upgraded in
    one transaction; a new one is stamped; a newer one is refused."""
    from sqlalchemy import inspect, text

    from outer_gateway import schema as gateway_schema
    from relay.db import server_engine
    from relay.errors import UsageError

    engine = server_engine(request.getfixturevalue("database"))
    try:
        gateway_schema.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(text("DROP INDEX audit_bundles_agent_head"))  # added by 0002
            conn.execute(text("DROP TABLE agent_revocations"))  # added by 0004
            conn.execute(text("ALTER TABLE agents DROP COLUMN next_export_at"))  # added by 0006
        key = os.urandom(32)
        found = gateway_migrations.prepare_store(engine, None, key, gateway_schema.metadata)
        assert found == gateway_migrations.BASELINE
        with engine.connect() as conn:
            assert gateway_migrations.stored_revision(conn) == gateway_migrations.HEAD
            indexes = {i["name"] for i in inspect(conn).get_indexes("audit_bundles")}
            tables = set(inspect(conn).get_table_names())
            agent_columns = {c["name"] for c in inspect(conn).get_columns("agents")}
        assert "next_export_at" in agent_columns
        assert "audit_bundles_agent_head" in indexes
        assert "agent_revocations" in tables
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(UsageError) as refused:
            gateway_migrations.prepare_store(engine, None, key, gateway_schema.metadata)
        assert refused.value.code == "store_too_new"
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        assert gateway_migrations.prepare_store(engine, None, key, gateway_schema.metadata) == ""
        with engine.connect() as conn:
            assert gateway_migrations.stored_revision(conn) == gateway_migrations.HEAD
    finally:
        engine.dispose()


def test_the_rotation_jobs_table_comes_with_the_store(request: pytest.FixtureRequest) -> None:
    """APScheduler made ``rotation_jobs`` at its first use: two ``gateway run`` processes
    starting together on a new PostgreSQL store both ran CREATE TABLE, and one died (a unique
    violation in the catalog). A new store has it; 0008 adds it to an older one, and keeps the
    one (and the jobs) APScheduler made."""
    from sqlalchemy import inspect, text

    from outer_gateway import schema as gateway_schema
    from outer_gateway.rotation_schedule import TABLE
    from relay.db import server_engine

    assert TABLE == "rotation_jobs"
    engine = server_engine(request.getfixturevalue("database"))
    key = os.urandom(32)

    def prepare() -> str:
        return gateway_migrations.prepare_store(engine, None, key, gateway_schema.metadata)

    try:
        assert prepare() == ""
        with engine.connect() as conn:
            assert inspect(conn).has_table(TABLE)
        with engine.begin() as conn:  # back to 0007, the table as APScheduler leaves it
            conn.execute(text("UPDATE alembic_version SET version_num = '0007'"))
            conn.execute(text("INSERT INTO rotation_jobs VALUES ('rotate:db/*', 1.5, 'state')"))
        assert prepare() == "0007"
        with engine.begin() as conn:
            assert conn.execute(text("SELECT id FROM rotation_jobs")).all() == [("rotate:db/*",)]
            conn.execute(text("DROP TABLE rotation_jobs"))
            conn.execute(text("UPDATE alembic_version SET version_num = '0007'"))
        assert prepare() == "0007"
        with engine.connect() as conn:
            assert gateway_migrations.stored_revision(conn) == gateway_migrations.HEAD
            indexes = {i["name"] for i in inspect(conn).get_indexes(TABLE)}
        assert indexes == {"ix_rotation_jobs_next_run_time"}
    finally:
        engine.dispose()


_KILLED_GATEWAY_MIGRATION = """
import sys
from pathlib import Path
import outer_gateway.migrations as migrations
from outer_gateway.store import GatewayStore
from relay.home import Home

real = migrations._run

def hang(conn, action):
    real(conn, action)  # every revision ran, inside the one transaction
    print("in-transaction", flush=True)
    sys.stdin.read()

migrations._run = hang
GatewayStore.open(Home.open(Path(sys.argv[1]), "gateway"))
"""


def test_a_gateway_migration_killed_midway_leaves_revision_0001(tmp_path: Path) -> None:
    home = old_home(tmp_path, "gateway")
    before = v1_rows(raw(home), "gateway")
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_KILLED_GATEWAY_MIGRATION), str(home.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"in-transaction\n"
    child.send_signal(signal.SIGKILL)
    child.wait()
    tables = {r[0] for r in raw(home).execute("SELECT name FROM sqlite_master").fetchall()}
    assert "alembic_version" not in tables and "audit_bundles_agent_head" not in tables
    assert v1_rows(raw(home), "gateway") == before
    assert backup_path(home.store_path, gateway_migrations.BASELINE).exists()
    GatewayStore.open(home).close()
    assert raw(home).execute("SELECT version_num FROM alembic_version").fetchall() == [
        (gateway_migrations.HEAD,)
    ]
