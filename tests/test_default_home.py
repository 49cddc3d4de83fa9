"""Default homes: /var/lib/relay/SIDE for services, $XDG_DATA_HOME/relay/SIDE for users;
--home and RELAY_HOME override; export falls back to export.to."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from relay.home_location import default_home
from tests.conftest import make_pair, run_relay

pytestmark = pytest.mark.slow  # real processes, servers or stores: seconds each


def test_service_homes_and_user_homes(tmp_path: Path) -> None:
    system = tmp_path / "var-lib-relay"
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "u")}
    assert default_home("agent", euid=0, environ=env, system_root=system) == system / "agent"
    assert default_home("agent", euid=1000, environ=env, system_root=system) == (
        tmp_path / "xdg" / "relay" / "agent"
    )
    (system / "gateway").mkdir(parents=True)  # a service's StateDirectory exists
    assert default_home("gateway", euid=1000, environ=env, system_root=system) == (
        system / "gateway"
    )
    relative = {"XDG_DATA_HOME": "not/absolute", "HOME": str(tmp_path / "u")}
    assert default_home("agent", euid=1000, environ=relative, system_root=system) == (
        tmp_path / "u" / ".local" / "share" / "relay" / "agent"
    )


def test_commands_without_flags_use_the_default_home_and_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import relay.home_location

    system = tmp_path / "var-lib-relay"
    monkeypatch.setattr(relay.home_location, "SYSTEM_ROOT", system)
    as_root = run_relay("gateway", "init", "--name", "hq")
    assert as_root.status == 0, as_root.err
    assert f"initialised in {system / 'gateway'}" in as_root.out
    assert run_relay("gateway", "agents").status == 0  # found again without flags

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    user = run_relay(
        "agent", "init", "--name", "laptop", "--request-out", str(tmp_path / "r"), env=env
    )
    expected = tmp_path / "xdg" / "relay" / "agent"
    assert f"initialised in {expected}" in user.out
    assert run_relay("agent", "status", env=env).status == 0
    explicit = run_relay(
        "agent",
        "init",
        "--name",
        "other",
        "--request-out",
        str(tmp_path / "r2"),
        env={**env, "RELAY_HOME": str(tmp_path / "x")},
    )
    assert f"initialised in {tmp_path / 'x'}" in explicit.out


def test_export_uses_export_to_when_given_no_destination(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    pair.put("db/pw", b"x")
    assert pair.gateway("grant", "plant7", "db/**").status == 0
    missing = run_relay("gateway", "export", "--home", str(pair.gw))
    assert missing.status == 2
    assert missing.err.startswith("relay: error: no_destination: ")
    assert pair.gateway("config", "set", "export.to", str(tmp_path / "outbox")).status == 0
    done = run_relay("gateway", "export", "--home", str(pair.gw))
    assert done.status == 0, done.err
    assert done.out.startswith(str(tmp_path / "outbox"))
