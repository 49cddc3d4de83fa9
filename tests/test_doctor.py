"""``relay doctor``: one line per check, exit 0 / 1 / 2, and the faults the issue names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from relay.doctor import FAIL, OK, examine, exit_status
from tests.conftest import Pair, make_pair, run_process, run_relay

pytestmark = pytest.mark.slow  # real processes, servers or stores: seconds each

PASS = {"RELAY_PASSPHRASE": "doctor-test-passphrase"}
YEAR = 365 * 86400


def doctor(home: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = run_process("doctor", "--home", str(home), *extra, env=env)
    return result.status, result.out


def exchanged(pair: Pair) -> None:
    pair.put("db/plant7/password", b"doctor-secret")
    run_relay("gateway", "grant", "--home", str(pair.gw), "plant7", "db/**")
    pair.export()
    assert pair.agent("import", str(pair.out)).status == 0


def checkpoint(home: Path) -> None:
    """Fold the WAL into the store file, so a page written there is the one read."""
    import sqlcipher3

    from relay.home import Home

    key = Home.open(home, "agent").secrets.store_key
    conn = sqlcipher3.connect(str(home / "store.db"), isolation_level=None)
    conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def by_check(out: str) -> dict[str, list[str]]:
    lines: dict[str, list[str]] = {}
    for line in out.splitlines():
        status, check = line.split()[:2]
        lines.setdefault(check, []).append(status)
    return lines


def test_a_healthy_agent_is_all_ok_with_passphrase_protected_keys(tmp_path: Path) -> None:
    ag = tmp_path / "ag"
    init = run_relay(
        "agent",
        "init",
        "--home",
        str(ag),
        "--name",
        "plant7",
        "--request-out",
        str(tmp_path / "req"),
        env=PASS,
    )
    assert init.status == 0, init.err
    (tmp_path / "inbox").mkdir()
    run_relay("agent", "config", "set", "agent.inbox", str(tmp_path / "inbox"), "--home", str(ag))
    status, out = doctor(ag, env=PASS)
    checks = by_check(out)
    assert checks["key_file"] == [OK] and checks["store"] == [OK] and checks["folders"] == [OK]
    assert checks["trust"] == [FAIL]  # nothing trusted yet: the fix is named
    assert "relay agent trust" in out
    assert status == 2


def test_a_working_pair_passes_and_json_lists_every_check(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    exchanged(pair)
    status, out = doctor(pair.ag)
    assert status == 1  # the only warning: keys not wrapped with a passphrase
    assert [line.split()[0] for line in out.splitlines()].count("warn") == 1
    assert "key_file" in out and "not wrapped" in out
    status, out = doctor(pair.gw, "--json")
    report = json.loads(out)
    assert {f["check"] for f in report["findings"]} >= {
        "home",
        "key_file",
        "store",
        "schema",
        "trust",
        "clock",
        "audit",
        "disk",
        "quarantine",
    }
    assert status == 1


def test_wrong_permissions_fail_with_the_chmod_fix(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    (pair.ag / "identity.key").chmod(0o644)
    status, out = doctor(pair.ag)
    assert status == 2
    assert f"fail key_file     {pair.ag}/identity.key is mode 644" in out
    assert f"fix: chmod 600 {pair.ag}/identity.key" in out
    (pair.ag / "identity.key").chmod(0o600)
    pair.ag.chmod(0o755)
    status, out = doctor(pair.ag)
    assert status == 2 and f"chmod 700 {pair.ag}" in out


def test_a_missing_key_fails(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    (pair.gw / "identity.key").unlink()
    status, out = doctor(pair.gw)
    assert status == 2
    assert "key_file" in out and "is missing" in out and "restore" in out


def test_a_corrupted_page_fails_the_integrity_check(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    exchanged(pair)
    store = pair.ag / "store.db"
    checkpoint(pair.ag)
    with store.open("r+b") as f:
        f.seek(4096 + 200)  # inside the second page
        f.write(os.urandom(16))
    status, out = doctor(pair.ag)
    assert status == 2
    assert by_check(out)["store"] == [FAIL]
    assert "integrity check failed" in out and "restore" in out


def test_a_clock_a_year_behind_the_newest_signed_time_fails(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    exchanged(pair)
    import time

    now = int(time.time())
    assert [f.status for f in examine(pair.ag, now) if f.check == "clock"] == [OK]
    behind = examine(pair.ag, now - YEAR)
    clock = [f for f in behind if f.check == "clock"]
    assert clock[0].status == FAIL
    assert "behind the newest signed time" in clock[0].message and "clock" in clock[0].fix
    assert exit_status(behind) == 2
    gateway_clock = [f for f in examine(pair.gw, now - YEAR) if f.check == "clock"]
    assert gateway_clock[0].status == FAIL


def test_an_audit_return_stuck_for_weeks_is_a_warning(tmp_path: Path) -> None:
    import time

    pair = make_pair(tmp_path)
    exchanged(pair)
    now = int(time.time())
    (audit,) = [f for f in examine(pair.ag, now) if f.check == "audit"]
    assert audit.status == OK and "backlog" in audit.message
    (later,) = [f for f in examine(pair.ag, now + 30 * 86400) if f.check == "audit"]
    assert later.status == "warn" and "oldest unacknowledged 30d old" in later.message
    assert "relay agent audit export" in later.fix


def test_a_pinned_identity_altered_in_the_store_fails(tmp_path: Path) -> None:
    import sqlcipher3

    from relay.home import Home

    pair = make_pair(tmp_path)
    assert by_check(doctor(pair.ag)[1])["trust"] == [OK]
    key = Home.open(pair.ag, "agent").secrets.store_key
    conn = sqlcipher3.connect(str(pair.ag / "store.db"), isolation_level=None)
    conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    conn.execute("UPDATE trusted SET sign_public = ?", (os.urandom(32),))
    conn.close()
    status, out = doctor(pair.ag)
    assert status == 2
    assert "key id does not match its keys" in out


def test_missing_inbox_and_unreachable_sink_fail(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    pair.agent("config", "set", "agent.inbox", str(tmp_path / "nowhere"))
    pair.agent("config", "set", "audit.syslog", "tcp://127.0.0.1:9")
    status, out = doctor(pair.ag)
    assert status == 2
    assert f"fix: mkdir -m 700 {tmp_path}/nowhere" in out
    assert "syslog tcp://127.0.0.1:9 unreachable" in out


def test_sizes_read_as_an_operator_writes_them() -> None:
    from relay.doctor_host import _size

    assert [_size(n) for n in (0, 1023, 1024, 5 << 20, 3 << 30)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "5.0 MiB",
        "3.0 GiB",
    ]
