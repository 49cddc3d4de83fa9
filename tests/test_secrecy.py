"""Secrets never leak: planted unique values appear in no home file, bundle byte, log line or
error message; homes are private; stores are SQLCipher, not plain SQLite; keys can be wrapped."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from tests.conftest import Pair, Result, make_pair, run_process, run_relay


def planted() -> bytes:
    return f"PLANTED-{os.urandom(12).hex()}".encode()


def every_file(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


def test_planted_values_appear_nowhere_but_get(pair: Pair) -> None:
    values = {f"app/s{i}": planted() for i in range(5)}
    outputs: list[Result] = []
    for path, value in values.items():
        outputs.append(pair.gateway("secret", "put", path, "-", stdin=value))
    outputs.append(pair.gateway("grant", "plant7", "app/*"))
    outputs.append(pair.gateway("secret", "list", "--json"))
    bundles = pair.export()
    outputs.append(pair.agent("import", str(pair.out)))
    outputs.append(pair.agent("secret", "list"))
    outputs.append(pair.agent("status"))
    outputs.append(pair.agent("import", str(pair.out)))
    tampered = bytearray(bundles[0].read_bytes())
    tampered[-1] ^= 1
    bad = pair.root / "bad" / "x.bundle"
    bad.parent.mkdir()
    bad.write_bytes(bytes(tampered))
    outputs.append(pair.agent("import", str(bad)))
    outputs.append(run_relay("bundle", "inspect", "--json", str(bundles[0])))
    for path, value in values.items():
        assert pair.get(path).stdout == value + b"\n"
    everything = [o.stdout + o.stderr for o in outputs] + [
        f.read_bytes() for f in every_file(pair.gw, pair.ag, pair.out, bad.parent)
    ]
    for value in values.values():
        for blob in everything:
            assert value not in blob
            assert value.hex().encode() not in blob


def test_homes_are_private_and_stores_are_encrypted(pair: Pair) -> None:
    pair.put("a/b", planted())
    pair.gateway("grant", "plant7", "a/*")
    pair.export()
    pair.agent("import", str(pair.out))
    for home in (pair.gw, pair.ag):
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        for path in every_file(home):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
            assert not path.read_bytes().startswith(b"SQLite format 3"), path
        store = home / "store.db"
        conn = sqlite3.connect(store)
        with pytest.raises(sqlite3.DatabaseError):
            conn.execute("SELECT * FROM sqlite_master").fetchall()
        conn.close()


@pytest.mark.slow
def test_passphrase_wraps_the_keys(tmp_path: Path) -> None:
    env = {"RELAY_PASSPHRASE": "a long passphrase for tests"}
    home = tmp_path / "gw"
    assert run_relay("gateway", "init", "--home", str(home), "--name", "hq", env=env).status == 0
    key_file = (home / "identity.key").read_text()
    assert '"protection": "argon2id"' in key_file
    missing = run_relay("gateway", "secret", "list", "--home", str(home))
    assert missing.status != 0
    assert "passphrase_required" in missing.err
    wrong = run_relay(
        "gateway", "secret", "list", "--home", str(home), env={"RELAY_PASSPHRASE": "not it"}
    )
    assert "bad_passphrase" in wrong.err
    assert "not it" not in wrong.err
    assert run_relay("gateway", "secret", "list", "--home", str(home), env=env).status == 0


def test_key_file_readable_by_others_is_refused(pair: Pair) -> None:
    (pair.ag / "identity.key").chmod(0o644)
    result = pair.get("x")
    assert "unsafe_permissions" in result.err


@pytest.mark.slow
def test_a_real_process_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    value = planted()
    pair.put("p/q", value)
    pair.gateway("grant", "plant7", "p/*")
    pair.export()
    imported = run_process("agent", "import", "--home", str(pair.ag), str(pair.out))
    assert imported.status == 0, imported.err
    got = run_process("agent", "get", "--home", str(pair.ag), "p/q")
    assert (got.status, got.stdout, got.stderr) == (0, value + b"\n", b"")
    missing = run_process("agent", "get", "--home", str(pair.ag), "p/none")
    assert missing.status == 1
    assert missing.stdout == b""
    assert missing.err.count("\n") == 1
    assert missing.err.startswith("relay: error: not_found:")
    junk = tmp_path / "junk.bundle"
    junk.write_bytes(b"RELAYBv1" + os.urandom(64))
    rejected = run_process("agent", "import", "--home", str(pair.ag), str(junk))
    assert rejected.status == 1
    assert rejected.err.startswith("relay: rejected: junk.bundle: malformed:")
