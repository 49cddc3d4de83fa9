"""``[[hooks]]`` under a real ``relay agent run``: debounced, audited, given paths and versions
only; failing, hanging and flooding hooks never stop the agent; a change that arrived while the
agent was down, or an agent killed between a render and its hook, is acted on after a start."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.consume_kit import (
    PYTHON,
    launch_agent,
    planted,
    prepare_agent,
    publish,
    wait_for,
)

pytestmark = pytest.mark.slow  # runs relay and CMD as real processes

CHILD = str(Path(__file__).with_name("consume_child.py"))


def toml_list(*items: str) -> str:
    return json.dumps(list(items))


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_render_run_signal_and_systemctl_hooks_debounced(tmp_path: Path) -> None:
    template = tmp_path / "app.conf.tmpl"
    template.write_text('password={{ secret("db/web/password") }}\n')
    out = tmp_path / "run" / "app.conf"
    out.parent.mkdir()
    hook_log, signals_log, systemctl_log = (
        tmp_path / "hook.log",
        tmp_path / "signals.log",
        tmp_path / "systemctl.log",
    )
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    (fakebin / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {systemctl_log}\n')
    (fakebin / "systemctl").chmod(0o755)
    app = subprocess.Popen([PYTHON, CHILD, "signals", str(signals_log)])
    pidfile = tmp_path / "app.pid"
    pidfile.write_text(f"{app.pid}\n")
    toml = f"""
[[hooks]]
name = "config"
paths = ["db/web/*"]
debounce = "1500ms"
render = {{ template = "{template}", out = "{out}", mode = "0640" }}

[[hooks]]
name = "notify"
paths = ["db/web/*"]
debounce = "1500ms"
run = {toml_list(PYTHON, CHILD, "hook", str(hook_log))}

[[hooks]]
name = "reload"
paths = ["db/web/password"]
signal = {{ pidfile = "{pidfile}", name = "HUP" }}

[[hooks]]
name = "unit"
paths = ["db/**"]
systemctl = ["reload", "legacy.service"]

[[hooks]]
name = "unrelated"
paths = ["other/**"]
run = ["false"]
"""
    pair, inbox, _ = prepare_agent(tmp_path, toml)
    env = {"PATH": f"{fakebin}:{os.environ['PATH']}", "RELAY_CLIENT_SECRET": "withheld"}
    daemon = launch_agent(pair, inbox, env=env)
    v1, v2, v3 = planted("V1"), planted("V2"), planted("V3")
    try:
        wait_for(signals_log.exists, what="signals child ready", watch=tmp_path)
        daemon.drop(daemon.publish({"db/web/password": v1}))
        daemon.wait_event("hook.ran", count=4)
        assert out.read_bytes() == b"password=" + v1 + b"\n"
        assert stat.S_IMODE(out.stat().st_mode) == 0o640
        assert lines(hook_log) == [
            {
                "hook": "notify",
                "changed": "db/web/password@1",
                "paths": "db/web/password@1",
                "names": ["RELAY_CHANGED", "RELAY_HOOK", "RELAY_PATHS"],
            }
        ]
        wait_for(lambda: "SIGHUP" in signals_log.read_text(), what="HUP", watch=tmp_path)
        assert systemctl_log.read_text() == "reload legacy.service\n"
        second, third = (
            daemon.publish({"db/web/password": v2}),
            daemon.publish({"db/web/password": v3}),
        )
        daemon.drop(second)
        daemon.drop(third)
        daemon.wait_event("hook.ran", count=8, timeout=20)
        assert out.read_bytes() == b"password=" + v3 + b"\n"
        notes = lines(hook_log)
        assert [n["changed"] for n in notes] == ["db/web/password@1", "db/web/password@3"]
        ran = daemon.events("hook.ran")
        assert sorted(r["hook"] for r in ran) == sorted(["config", "notify", "reload", "unit"] * 2)
        assert not [r for r in daemon.events("hook.ran") if r["hook"] == "unrelated"]
        # Only before the first import: the template's secret did not exist yet.
        assert {(f["hook"], f["reason"]) for f in daemon.events("hook.failed")} <= {
            ("config", "not_found")
        }
        # hook.ran says the signal was sent, not that the app has handled it yet
        wait_for(
            lambda: signals_log.read_text().count("SIGHUP") >= 2, what="2nd HUP", watch=tmp_path
        )
        assert signals_log.read_text().count("SIGHUP") == 2
        state = json.loads((pair.ag / "hooks.state.json").read_text())
        assert state["notify"] == ["db/web/password@3"]
        assert stat.S_IMODE((pair.ag / "hooks.state.json").stat().st_mode) == 0o600
    finally:
        daemon.stop()
        app.terminate()
        app.wait()
    everything = daemon.log().encode() + (pair.ag / "hooks.state.json").read_bytes()
    everything += hook_log.read_bytes() + systemctl_log.read_bytes()
    for value in (v1, v2, v3):
        assert value not in everything


def test_failing_hanging_and_flooding_hooks_never_stop_the_agent(tmp_path: Path) -> None:
    hang_pid = tmp_path / "hang.pid"
    toml = f"""
[[hooks]]
name = "fails"
paths = ["db/**"]
debounce = "100ms"
retries = 2
backoff = "200ms"
run = ["sh", "-c", "echo failing; exit 3"]

[[hooks]]
name = "hangs"
paths = ["db/**"]
timeout = "1s"
retries = 0
run = {toml_list(PYTHON, CHILD, "hang", str(hang_pid))}

[[hooks]]
name = "floods"
paths = ["db/**"]
run = {toml_list(PYTHON, CHILD, "flood", str(20 * 1024 * 1024))}

[[hooks]]
name = "missing"
paths = ["db/**"]
retries = 0
run = ["/no/such/hook"]
"""
    pair, inbox, _ = prepare_agent(tmp_path, toml)
    daemon = launch_agent(pair, inbox)
    try:
        daemon.drop(daemon.publish({"db/x": planted()}))
        daemon.wait_event("hook.gave_up", count=3, timeout=30)
        failed = daemon.events("hook.failed")
        fails = [f for f in failed if f["hook"] == "fails"]
        assert [(f["reason"], f["attempt"]) for f in fails] == [
            ("exit_3", 1),
            ("exit_3", 2),
            ("exit_3", 3),
        ]
        assert {"hook": "hangs", "reason": "timeout", "attempt": 1}.items() <= next(
            f for f in failed if f["hook"] == "hangs"
        ).items()
        assert next(f for f in failed if f["hook"] == "missing")["reason"] == "command_not_found"
        pid = int(hang_pid.read_text())
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
        flood = next(r for r in daemon.events("hook.ran") if r["hook"] == "floods")
        assert flood["output_bytes"] == 20 * 1024 * 1024
        assert "failing" in daemon.log()  # the start of a failed hook's output is logged
        health = httpx.get(f"{daemon.url}/v1/health", timeout=10)
        assert health.status_code == 200
        assert daemon.proc.poll() is None
    finally:
        daemon.stop()


def test_change_while_down_and_kill_between_render_and_hook(tmp_path: Path) -> None:
    template = tmp_path / "app.conf.tmpl"
    template.write_text('password={{ secret("db/web/password") }}\n')
    out = tmp_path / "app.conf"
    hook_log, go, started, pidfile = (
        tmp_path / "hook.log",
        tmp_path / "go",
        tmp_path / "started",
        tmp_path / "hook.pid",
    )
    script = (
        f'if [ -e {go} ]; then echo "$RELAY_CHANGED" >> {hook_log}; '
        f"else echo $$ > {pidfile}; touch {started}; exec sleep 60; fi"
    )
    toml = f"""
[[hooks]]
name = "config"
paths = ["db/web/*"]
debounce = "100ms"
render = {{ template = "{template}", out = "{out}" }}

[[hooks]]
name = "reload"
paths = ["db/web/*"]
debounce = "100ms"
timeout = "120s"
run = ["sh", "-c", {json.dumps(script)}]
"""
    pair, inbox, _ = prepare_agent(tmp_path, toml)
    v1, v2, v3 = planted("V1"), planted("V2"), planted("V3")
    go.touch()
    daemon = launch_agent(pair, inbox)
    try:
        daemon.drop(daemon.publish({"db/web/password": v1}))
        daemon.wait_event("hook.ran", count=2)
    finally:
        daemon.stop()
    # A change arrives while the agent is down.
    publish(pair, {"db/web/password": v2})
    go.unlink()
    daemon = launch_agent(pair, inbox, "agent2.log")
    # At its first pass the render is redone and the reload hook starts, then hangs: kill -9.
    wait_for(started.exists, what="reload hook started", watch=tmp_path)
    assert out.read_bytes() == b"password=" + v2 + b"\n"
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(10)
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    go.touch()
    publish(pair, {"db/web/password": v3})  # and one more while down
    daemon = launch_agent(pair, inbox, "agent3.log")
    try:
        daemon.wait_event("hook.ran", count=2)
        ran = {r["hook"]: r for r in daemon.events("hook.ran")}
        assert ran["reload"]["startup"] is True
        assert ran["reload"]["changed"] == "db/web/password@3"
        assert ran["config"]["startup"] is True
    finally:
        daemon.stop()
    assert hook_log.read_text().splitlines() == ["db/web/password@1", "db/web/password@3"]
    assert out.read_bytes() == b"password=" + v3 + b"\n"
    # Nothing to do at a start when everything is current.
    daemon = launch_agent(pair, inbox, "agent4.log")
    try:
        wait_for(
            lambda: "hooks: first pass done" in daemon.log(), what="first pass", watch=tmp_path
        )
    finally:
        daemon.stop()
    assert not daemon.events("hook.ran")
    assert hook_log.read_text().splitlines() == ["db/web/password@1", "db/web/password@3"]


def test_a_bad_hooks_table_stops_the_start(tmp_path: Path) -> None:
    toml = '[[hooks]]\npaths = ["db/**"]\nrun = ["true"]\nsignal = { pidfile = "/x" }\n'
    pair, _, _ = prepare_agent(tmp_path, toml)
    proc = subprocess.run(
        [PYTHON, "-m", "relay", "agent", "run", "--home", str(pair.ag)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.decode()
        .strip()
        .endswith(
            "relay: error: bad_config: [[hooks]] #1: "
            "give exactly one of run, render, signal, systemctl"
        )
    )
