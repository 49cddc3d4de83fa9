"""Backup and restore: an encrypted consistent snapshot; a restored agent keeps its high-water
marks and audit chain; a restored gateway never reuses a seq; bad files and existing homes are
refused with nothing changed."""

from __future__ import annotations

import itertools
import json
import secrets
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from relay.backup import SEQ_SAFETY_MARGIN
from relay.home import Home
from tests.conftest import Pair, make_pair, run_relay

pytestmark = pytest.mark.slow  # real processes, servers or stores: seconds each

PASSPHRASE = "backup-passphrase-for-tests"


@pytest.fixture
def passfile(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "backup.pass"
    path.write_text(PASSPHRASE + "\n")
    path.chmod(0o600)
    return {"RELAY_BACKUP_PASSPHRASE_FILE": str(path)}


def seq_of(bundle: Path) -> int:
    inspected = run_relay("bundle", "inspect", str(bundle), "--json")
    return int(json.loads(inspected.out)["seq"])


def export_to(pair: Pair, folder: Path) -> Path:
    done = run_relay("gateway", "export", "--home", str(pair.gw), "--to", str(folder))
    assert done.status == 0, done.err
    (bundle,) = [Path(line) for line in done.out.split()]
    return bundle


def test_a_restored_agent_keeps_its_high_water_marks_and_audit_chain(
    tmp_path: Path, passfile: dict[str, str]
) -> None:
    pair = make_pair(tmp_path)
    planted = f"agent-backup-{secrets.token_hex(8)}".encode()
    pair.put("db/pw", planted)
    assert pair.gateway("grant", "plant7", "db/**").status == 0
    never_imported = export_to(pair, tmp_path / "old")  # seq 1, left on a medium
    pair.put("db/pw", planted + b"-v2")
    current = export_to(pair, tmp_path / "new")  # seq 2
    assert pair.agent("import", str(current)).status == 0
    backup = tmp_path / "agent.backup"
    made = run_relay("agent", "backup", "--home", str(pair.ag), "--to", str(backup), env=passfile)
    assert made.status == 0, made.err
    assert backup.stat().st_mode & 0o777 == 0o600
    data = backup.read_bytes()
    assert planted not in data and b"sign_seed" not in data and b"plant7" not in data

    new = tmp_path / "restored"
    done = run_relay("agent", "restore", "--from", str(backup), "--home", str(new), env=passfile)
    assert done.status == 0, done.err
    assert f"restored agent home {new}" in done.out
    got = run_relay("agent", "get", "--home", str(new), "db/pw")
    assert got.stdout == planted + b"-v2\n"
    old = run_relay("agent", "import", "--home", str(new), str(never_imported))
    assert old.status == 1 and "rollback" in old.err
    again = run_relay("agent", "import", "--home", str(new), str(current))
    assert "duplicate" in again.out

    from inner_agent.audit import AgentAudit

    records = AgentAudit(Home.open(new, "agent")).records()
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    types = [r.type for r in records]
    after = types[types.index("home.restored") + 1 :]  # the chain goes on after the restore
    assert after == ["secret.read", "bundle.rejected", "bundle.duplicate"]


def test_a_restored_gateway_never_reuses_a_seq(tmp_path: Path, passfile: dict[str, str]) -> None:
    pair = make_pair(tmp_path)
    pair.put("db/pw", b"one")
    assert pair.gateway("grant", "plant7", "db/**").status == 0
    first = export_to(pair, tmp_path / "e1")
    backup = tmp_path / "gw.backup"
    made = run_relay("gateway", "backup", "--home", str(pair.gw), "--to", str(backup), env=passfile)
    assert made.status == 0, made.err
    # after the backup the gateway goes on: seq 2 and 3 reach the agent, then the disk dies
    later = [export_to(pair, tmp_path / f"e{n}") for n in (2, 3)]
    for bundle in later:
        assert pair.agent("import", str(bundle)).status == 0
    assert [seq_of(b) for b in (first, *later)] == [1, 2, 3]

    new = tmp_path / "gw-restored"
    done = run_relay("gateway", "restore", "--from", str(backup), "--home", str(new), env=passfile)
    assert done.status == 0, done.err
    pair.gw = new
    pair.put("db/pw", b"after-restore")
    bundle = export_to(pair, tmp_path / "e4")
    assert seq_of(bundle) == 1 + SEQ_SAFETY_MARGIN + 1
    assert pair.agent("import", str(bundle)).status == 0
    assert pair.get("db/pw").stdout == b"after-restore\n"


def _checkpoint(home_path: Path) -> None:
    """Fold the agent store's WAL into the file and remove it (a process that exits with the
    store open leaves a WAL that the next closing connection checkpoints)."""
    from inner_agent.store import AgentStore
    from relay.home import Home

    store = AgentStore.open(Home.open(home_path, "agent"))
    try:
        with store.raw() as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        store.close()


def test_restore_refuses_an_existing_home(tmp_path: Path, passfile: dict[str, str]) -> None:
    pair = make_pair(tmp_path)
    backup = tmp_path / "ag.backup"
    assert (
        run_relay(
            "agent", "backup", "--home", str(pair.ag), "--to", str(backup), env=passfile
        ).status
        == 0
    )
    _checkpoint(pair.ag)  # the store's WAL folded in: bytes compare as the data they hold
    before = {p.name: p.read_bytes() for p in pair.ag.iterdir() if p.is_file()}
    for target in (pair.ag, pair.root / "out-of-the-way"):
        target.mkdir(exist_ok=True)
        (target / "something").write_text("x") if target != pair.ag else None
        refused = run_relay(
            "agent", "restore", "--from", str(backup), "--home", str(target), env=passfile
        )
        assert refused.status == 2
        assert refused.err.startswith("relay: error: home_exists: ")
    after = {p.name: p.read_bytes() for p in pair.ag.iterdir() if p.is_file()}
    assert after == before
    wrong_side = run_relay(
        "gateway", "restore", "--from", str(backup), "--home", str(tmp_path / "g"), env=passfile
    )
    assert "wrong_home" in wrong_side.err
    assert not (tmp_path / "g").exists()


def test_truncated_foreign_and_wrong_passphrase_backups_are_refused(
    tmp_path: Path, passfile: dict[str, str]
) -> None:
    pair = make_pair(tmp_path)
    backup = tmp_path / "ag.backup"
    assert (
        run_relay(
            "agent", "backup", "--home", str(pair.ag), "--to", str(backup), env=passfile
        ).status
        == 0
    )
    data = backup.read_bytes()
    truncated = tmp_path / "truncated"
    truncated.write_bytes(data[: len(data) // 2])
    foreign = tmp_path / "foreign"
    foreign.write_bytes(b"PK\x03\x04 not a relay backup" * 10)
    flipped = tmp_path / "flipped"
    flipped.write_bytes(data[:-10] + bytes([data[-10] ^ 1]) + data[-9:])
    other = tmp_path / "other.pass"
    other.write_text("a different passphrase")
    cases = [
        (truncated, passfile),
        (foreign, passfile),
        (flipped, passfile),
        (backup, {"RELAY_BACKUP_PASSPHRASE_FILE": str(other)}),
    ]
    for index, (source, env) in enumerate(cases):
        target = tmp_path / f"target{index}"
        refused = run_relay(
            "agent", "restore", "--from", str(source), "--home", str(target), env=env
        )
        assert refused.status == 2, source
        assert refused.err == (
            "relay: error: bad_backup: not an intact relay backup, or the wrong passphrase\n"
        )
        assert not target.exists()


def test_no_passphrase_no_backup(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    refused = run_relay("agent", "backup", "--home", str(pair.ag), "--to", str(tmp_path / "b"))
    assert "passphrase_required" in refused.err
    assert not (tmp_path / "b").exists()


def test_postgres_gateway_pg_dump_recipe(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """docs/backup.md: pg_dump, pg_restore into a new database, move the seqs up, go on."""
    url = request.getfixturevalue("database")
    pair = make_pair(tmp_path)
    assert pair.gateway("config", "set", "gateway.store_url", url).status == 0
    assert pair.gateway("enroll", str(pair.root / "ag.request")).status == 0
    pair.put("db/pw", b"on-postgres")
    assert pair.gateway("grant", "plant7", "db/**").status == 0
    assert seq_of(export_to(pair, tmp_path / "e1")) == 1
    refused = run_relay("gateway", "backup", "--home", str(pair.gw), "--to", str(tmp_path / "x"))
    assert "backup_unsupported" in refused.err

    plain = url.replace("+psycopg", "")
    dump = tmp_path / "relay.dump"
    subprocess.run(["pg_dump", "--format=custom", "--file", str(dump), plain], check=True)
    assert seq_of(export_to(pair, tmp_path / "e2")) == 2  # used after the dump, then lost
    restored_db = f"relay_test_{secrets.token_hex(4)}"
    admin = plain.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{restored_db}"')
    try:
        restored = plain.rsplit("/", 1)[0] + "/" + restored_db
        subprocess.run(["pg_restore", "--no-owner", "--dbname", restored, str(dump)], check=True)
        subprocess.run(
            [
                "psql",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                f"UPDATE agents SET last_seq = last_seq + {SEQ_SAFETY_MARGIN}",  # noqa: S608
                restored,
            ],
            check=True,
            capture_output=True,
        )
        new = tmp_path / "gw-new"
        shutil.copytree(pair.gw, new)
        pair.gw = new
        assert (
            pair.gateway(
                "config", "set", "gateway.store_url", url.rsplit("/", 1)[0] + "/" + restored_db
            ).status
            == 0
        )
        assert seq_of(export_to(pair, tmp_path / "e3")) == 1 + SEQ_SAFETY_MARGIN + 1
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{restored_db}" WITH (FORCE)')
