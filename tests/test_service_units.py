"""The systemd units in deploy/systemd: valid (``systemd-analyze verify``) and hardened
(``systemd-analyze security --offline=yes`` rates each service OK or better)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real processes, servers or stores: seconds each

UNITS = Path(__file__).parent.parent / "deploy" / "systemd"
SERVICES = ("relay-agent.service", "relay-gateway.service", "relay-hop.service")
GOOD_ENOUGH = {"SAFE", "OK"}
REQUIRED = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "LimitCORE=0",
    "LoadCredential=relay-passphrase:",
    "ReadWritePaths=",
    "DynamicUser=yes",
)


@pytest.fixture(scope="module")
def units(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The units with ExecStart pointing at this checkout's relay (verify wants it to exist)."""
    folder = tmp_path_factory.mktemp("units")
    relay = Path(sys.executable).parent / "relay"
    for unit in UNITS.iterdir():
        text = unit.read_text().replace("/opt/relay/bin/relay", str(relay))
        (folder / unit.name).write_text(text)
    return folder


def test_units_verify(units: Path) -> None:
    names = [str(units / name) for name in (*SERVICES, "relay-hop.timer")]
    done = subprocess.run(
        ["systemd-analyze", "verify", *names], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "relay" not in done.stderr, done.stderr  # no warning about our units


@pytest.mark.parametrize("service", SERVICES)
def test_units_are_hardened(units: Path, service: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = (UNITS / service).read_text()
    for directive in REQUIRED:
        assert directive in text, directive
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(units / service)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", done.stdout)
    assert found, done.stdout + done.stderr
    with capsys.disabled():  # the score is worth seeing in every run
        print(f"\n{service}: systemd exposure {found.group(1)} {found.group(2)}")
    assert found.group(2) in GOOD_ENOUGH


def test_a_credential_unlocks_wrapped_keys(tmp_path: Path) -> None:
    """LoadCredential=relay-passphrase: relay reads $CREDENTIALS_DIRECTORY/relay-passphrase."""
    from tests.conftest import run_relay

    home = tmp_path / "ag"
    made = run_relay(
        "agent",
        "init",
        "--home",
        str(home),
        "--name",
        "svc",
        "--request-out",
        str(tmp_path / "req"),
        env={"RELAY_PASSPHRASE": "credential-passphrase"},
    )
    assert made.status == 0, made.err
    assert "passphrase_required" in run_relay("agent", "status", "--home", str(home)).err
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    (creds / "relay-passphrase").write_text("credential-passphrase\n")
    done = run_relay(
        "agent", "status", "--home", str(home), env={"CREDENTIALS_DIRECTORY": str(creds)}
    )
    assert done.status == 0, done.err
