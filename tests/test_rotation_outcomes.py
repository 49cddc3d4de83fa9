"""Outcomes travel back over the real loop: every version the agent applies or activates
(gateway rotation, pre-staged switch) and every change-hook run it makes (name, ok/failed/
timeout, exit status; never output or values) reaches ``relay gateway rotation status``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from inner_agent.hook_actions import ActionResult
from inner_agent.hook_reports import outcome_of, triggering
from inner_agent.rotation_outbox import outbox
from relay.home import Home
from tests.conftest import run_process, run_relay
from tests.consume_kit import PYTHON, launch_agent, planted, prepare_agent, publish, wait_for

PATH = "db/web/password"


def _items(pair: Any) -> list[tuple[str, str | None, int | None]]:
    """(kind, status or hook result, version) of what the agent's outbox holds."""
    held = outbox(Home.open(pair.ag, "agent"))
    return [(i.kind, i.status or i.result, i.version) for i in held]


def _status(pair: Any) -> list[dict[str, Any]]:
    result = run_relay("gateway", "rotation", "status", "--home", str(pair.gw), "--json")
    assert result.status == 0, result.err
    return list(json.loads(result.out))


@pytest.mark.slow  # runs `relay agent run` and hooks as real processes
def test_applied_activated_and_hook_outcomes_reach_the_gateway(tmp_path: Path) -> None:
    fails = tmp_path / "fails.py"
    fails.write_text("import sys\nprint('PLANTED-hook-output')\nsys.exit(3)\n")
    toml = f"""
[[hooks]]
name = "reload"
paths = ["db/web/*"]
debounce = "1s"
run = {json.dumps([PYTHON, "-c", "pass"])}

[[hooks]]
name = "notify"
paths = ["db/web/*"]
debounce = "1s"
retries = 0
run = {json.dumps([PYTHON, str(fails)])}
"""
    pair, inbox, _ = prepare_agent(tmp_path, toml)
    old, new = planted("OLD"), planted("NEW")
    daemon = launch_agent(pair, inbox)
    try:
        daemon.drop(daemon.publish({PATH: old}))  # version 1: a first version, not a rotation
        wait_for(lambda: len(_items(pair)) == 2, what="hook items for v1", watch=tmp_path)
        rotated = run_relay("gateway", "rotate", "--home", str(pair.gw), PATH)
        assert rotated.status == 0, rotated.err  # version 2, made at the gateway
        daemon.drop(daemon.publish({}))
        wait_for(
            lambda: ("outcome", "applied", 2) in _items(pair), what="applied v2", watch=tmp_path
        )
        wait_for(lambda: len(_items(pair)) == 5, what="hook items for v2", watch=tmp_path)
        staged = run_relay(
            "gateway", "secret", "put", "--home", str(pair.gw), PATH, "-",
            "--activates-at", "2s", stdin=new,
        )  # fmt: skip
        assert staged.status == 0, staged.err
        daemon.drop(daemon.publish({}))
        wait_for(
            lambda: ("outcome", "activated", 3) in _items(pair), what="activated v3", watch=tmp_path
        )
        wait_for(lambda: len(_items(pair)) == 8, what="hook items for v3", watch=tmp_path)
    finally:
        daemon.stop()
    assert sorted(_items(pair)) == sorted(
        [("outcome", "applied", 2), ("outcome", "activated", 3)]
        + [("hook", result, v) for v in (1, 2, 3) for result in ("ok", "failed")]
    )
    back = tmp_path / "back"
    assert (
        run_relay("agent", "audit", "export", "--home", str(pair.ag), "--to", str(back)).status == 0
    )
    imported = run_relay("gateway", "import", "--home", str(pair.gw), str(back))
    assert imported.status == 0, imported.err
    again = run_relay("gateway", "import", "--home", str(pair.gw), str(back))  # a repeat: no change
    assert again.status == 0, again.err
    rows = _status(pair)
    outcomes = [(r["status"], r["version"], r["result"]) for r in rows if r["kind"] == "outcome"]
    assert sorted(outcomes) == [("activated", 3, "kept"), ("applied", 2, "kept")]
    hooks = sorted(
        (r["hook"], r["status"], r["exit_status"], r["version"])
        for r in rows
        if r["kind"] == "hook"
    )
    assert hooks == sorted(
        [("notify", "failed", 3, v) for v in (1, 2, 3)]
        + [("reload", "ok", 0, v) for v in (1, 2, 3)]
    )
    text = run_relay("gateway", "rotation", "status", "--home", str(pair.gw)).out
    assert "hook notify failed exit 3 (v2)" in text and "activated v3" in text
    everything = (
        text
        + json.dumps(rows)
        + run_relay("gateway", "audit", "--home", str(pair.gw), "--own", "--json").out
    )
    for secret in (old, new, b"PLANTED-hook-output"):
        assert secret.decode() not in everything
    own = run_relay("gateway", "audit", "--home", str(pair.gw), "--own", "--json").out
    assert [json.loads(line)["type"] for line in own.splitlines()].count("rotation.hook") == 6


def test_hook_attempts_map_to_results_and_the_versions_that_set_them_off() -> None:
    assert outcome_of("run", ActionResult(None, 0.1)) == ("ok", 0)
    assert outcome_of("render", ActionResult(None, 0.1)) == ("ok", None)
    assert outcome_of("run", ActionResult("exit_3", 0.1)) == ("failed", 3)
    assert outcome_of("run", ActionResult("timeout", 9.0)) == ("timeout", None)
    assert outcome_of("signal", ActionResult("no_pidfile", 0.0)) == ("failed", None)
    assert outcome_of("run", ActionResult("killed_by_9", 0.0)) == ("failed", None)
    last = frozenset({"db/a@1", "db/b@4"})
    assert triggering(frozenset({"db/a@2", "db/b@4", "db/c@1"}), last) == [("db/a", 2), ("db/c", 1)]
    many = frozenset(f"db/{i:03d}@1" for i in range(40))
    assert len(triggering(many, None)) == 16


@pytest.mark.slow  # kills `relay agent rotate`, then starts `relay agent run`
def test_a_command_rotation_killed_before_its_commit_resolves_at_the_next_start(
    tmp_path: Path,
) -> None:
    device = tmp_path / "device-password"
    setter = json.dumps(["sh", "-c", f"cat > {device}"])
    verify = json.dumps(["sh", "-c", f"cmp -s - {device}"])
    toml = f"""
[[rotation.executor]]
paths = ["db/web/*"]
kind = "command"
command = {setter}
verify = {verify}
"""
    pair, inbox, _ = prepare_agent(tmp_path, toml)
    old = planted("OLD")
    device.write_bytes(old)
    publish(pair, {PATH: old})
    killed = run_process(
        "agent", "rotate", "--home", str(pair.ag), PATH, env={"RELAY_CRASH_AT": "rotation.executed"}
    )
    assert killed.status == -9
    assert device.read_bytes() != old and pair.get(PATH).stdout == old + b"\n"
    daemon = launch_agent(pair, inbox)  # its start resolves the candidate by asking `verify`
    try:
        wait_for(
            lambda: ("outcome", "recovered", 2) in _items(pair),
            what="recovered at start",
            watch=tmp_path,
        )
    finally:
        daemon.stop()
    assert pair.get(PATH).stdout.strip() == device.read_bytes()
    assert [kind for kind, _, _ in _items(pair)] == ["escrow", "outcome"]
