"""Keys at rest: the home passphrase from a file or a systemd credential, the warning when
``init`` stores keys unwrapped, and ``relay agent status`` showing how each key is protected."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_relay

PLANTED = "passphrase-planted-7f3a9c-for-grep"


def _secret_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def test_init_warns_in_one_line_when_keys_are_unwrapped(tmp_path: Path) -> None:
    result = run_relay(
        "agent",
        "init",
        "--home",
        str(tmp_path / "ag"),
        "--name",
        "p1",
        "--request-out",
        str(tmp_path / "req"),
    )
    assert result.status == 0
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("relay: warning: keys stored unwrapped")
    status = json.loads(run_relay("agent", "status", "--home", str(tmp_path / "ag"), "--json").out)
    assert status["key_protection"] == {"identity": "none", "store_key": "none"}


def test_passphrase_file_wraps_and_unlocks(tmp_path: Path) -> None:
    env = {"RELAY_PASSPHRASE_FILE": str(_secret_file(tmp_path / "pp", PLANTED))}
    home = tmp_path / "gw"
    made = run_relay("gateway", "init", "--home", str(home), "--name", "hq", env=env)
    assert made.status == 0 and made.err == ""
    doc = json.loads((home / "identity.key").read_text())
    assert doc["protection"] == "argon2id"
    locked = run_relay("gateway", "secret", "list", "--home", str(home))
    assert locked.status != 0 and "passphrase_required" in locked.err
    opened = run_relay("gateway", "secret", "list", "--home", str(home), env=env)
    assert opened.status == 0, opened.err
    wrong = run_relay(
        "gateway",
        "secret",
        "list",
        "--home",
        str(home),
        env={"RELAY_PASSPHRASE_FILE": str(_secret_file(tmp_path / "bad", "not it at all"))},
    )
    assert wrong.status != 0 and "bad_passphrase" in wrong.err
    for output in (made, locked, opened, wrong):
        assert PLANTED not in output.out + output.err
    for path in home.rglob("*"):
        if path.is_file():
            assert PLANTED.encode() not in path.read_bytes()


def test_systemd_credential_unlocks(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    _secret_file(creds / "relay-passphrase", PLANTED)
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    home = tmp_path / "ag"
    made = run_relay(
        "agent",
        "init",
        "--home",
        str(home),
        "--name",
        "p1",
        "--request-out",
        str(tmp_path / "req"),
        env=env,
    )
    assert made.status == 0 and made.err == ""
    status = run_relay("agent", "status", "--home", str(home), "--json", env=env)
    assert status.status == 0, status.err
    assert json.loads(status.out)["key_protection"]["identity"] == "argon2id"
    locked = run_relay("agent", "status", "--home", str(home))
    assert locked.status != 0 and "passphrase_required" in locked.err


def test_a_missing_passphrase_file_is_one_line(tmp_path: Path) -> None:
    result = run_relay(
        "agent",
        "init",
        "--home",
        str(tmp_path / "ag"),
        "--name",
        "p1",
        "--request-out",
        str(tmp_path / "req"),
        env={"RELAY_PASSPHRASE_FILE": str(tmp_path / "absent")},
    )
    assert result.status != 0
    assert result.err.startswith("relay: error: passphrase_required:")
    assert not (tmp_path / "ag" / "identity.key").exists()
