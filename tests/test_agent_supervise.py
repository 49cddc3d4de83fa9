"""Supervised commands: ``relay agent exec --restart-on-change`` and ``[[exec]]`` under
``relay agent run`` (restart on a new version, debounced and audited; signals forwarded; a child
ignoring SIGTERM is killed after the grace period; crash loops are held back)."""

from __future__ import annotations

import hashlib
import signal
import subprocess
from pathlib import Path

import pytest

from inner_agent.exec_runner import RestartLimiter
from tests.agent_daemon import Notifications
from tests.consume_kit import (
    PYTHON,
    audit_records,
    fields_of,
    launch_agent,
    loaded_pair,
    planted,
    prepare_agent,
    publish,
    relay_env,
    spawn,
    wait_for,
)

pytestmark = pytest.mark.slow  # runs relay and CMD as real processes

CHILD = str(Path(__file__).with_name("consume_child.py"))


def sha(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def served(state: Path) -> list[tuple[int, str]]:
    if not state.exists():
        return []
    return [(int(p), d) for p, d in (line.split() for line in state.read_text().splitlines())]


def supervise(home: Path, *options: str) -> list[str]:
    return [
        "agent",
        "exec",
        "--home",
        str(home),
        "--env",
        "P=db/web/password",
        "--restart-on-change",
        "--poll",
        "100ms",
        *options,
        "--",
    ]


def spawn_serving(
    home: Path, debounce: str, state: Path, notified: Notifications
) -> subprocess.Popen[bytes]:
    """``relay agent exec --restart-on-change`` of the test child serving ``P`` into ``state``,
    speaking sd_notify to ``notified``."""
    return spawn(
        *supervise(home, "--debounce", debounce),
        PYTHON,
        CHILD,
        "serve",
        "P",
        str(state),
        env=relay_env(NOTIFY_SOCKET=str(notified.path)),
    )


def test_restart_on_change_is_debounced_audited_and_stops_like_cmd(tmp_path: Path) -> None:
    v1, v2, v3 = planted("V1"), planted("V2"), planted("V3")
    pair = loaded_pair(tmp_path, {"db/web/password": v1})
    state = tmp_path / "served"
    notified = Notifications(tmp_path / "exec.notify")
    proc = spawn_serving(pair.ag, "3s", state, notified)
    try:
        wait_for(lambda: served(state), what="first child", watch=tmp_path)
        ((first_pid, digest),) = served(state)
        assert digest == sha(v1)
        publish(pair, {"db/web/password": v2})
        publish(pair, {"db/web/password": v3})
        wait_for(lambda: len(served(state)) == 2, what="restart", watch=tmp_path)
        # The new CMD runs (and writes its line) before relay audits exec.restarted; the
        # notification comes after the audit record.
        assert notified.wait_for(_restarts, 60), "no exec.restarted"
        second_pid, digest = served(state)[1]
        assert digest == sha(v3)
        assert not Path(f"/proc/{first_pid}/cmdline").exists()
        for pid in (proc.pid, second_pid):
            assert v3 not in Path(f"/proc/{pid}/cmdline").read_bytes()
        restarted = [fields_of(r) for r in audit_records(pair, "exec.restarted")]
        assert [(r["reason"], r["changed"]) for r in restarted] == [
            ("changed", "db/web/password@3")
        ]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == -signal.SIGTERM  # CMD died of it; so does relay
    finally:
        if proc.poll() is None:
            proc.kill()
        notified.close()
    assert len(served(state)) == 2
    blob = str(audit_records(pair)).encode()
    assert not any(v in blob for v in (v1, v2, v3))


def test_signals_are_forwarded_and_the_exit_status_is_cmds(tmp_path: Path) -> None:
    pair = loaded_pair(tmp_path, {"db/web/password": planted()})
    notes = tmp_path / "signals"
    proc = spawn(*supervise(pair.ag), PYTHON, CHILD, "signals", str(notes))
    try:
        wait_for(
            lambda: notes.exists() and "ready" in notes.read_text(), what="ready", watch=tmp_path
        )
        for sig in (signal.SIGUSR1, signal.SIGHUP, signal.SIGUSR2):
            proc.send_signal(sig)
            wait_for(
                lambda s=sig: signal.Signals(s).name in notes.read_text(),
                what=str(sig),
                watch=tmp_path,
            )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
    assert notes.read_text().split() == ["ready", "SIGUSR1", "SIGHUP", "SIGUSR2", "SIGTERM"]


def test_a_child_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    pair = loaded_pair(tmp_path, {"db/web/password": planted()})
    state = tmp_path / "served"
    args = supervise(pair.ag, "--grace", "1s", "--debounce", "100ms")
    proc = spawn(*args, PYTHON, CHILD, "serve", "P", str(state), "ignore-term")
    try:
        wait_for(lambda: served(state), what="first child", watch=tmp_path)
        publish(pair, {"db/web/password": planted()})
        wait_for(lambda: len(served(state)) == 2, what="restart", watch=tmp_path)
        killed = [fields_of(r) for r in audit_records(pair, "exec.killed")]
        assert killed[0]["pid"] == served(state)[0][0]
        proc.send_signal(signal.SIGTERM)  # forwarded, ignored, then SIGKILL after the grace
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()


def test_restart_limiter_holds_back_a_crash_loop() -> None:
    now = [0.0]
    limiter = RestartLimiter(2, 60.0, lambda: now[0])
    assert limiter.wait_time() == 0
    limiter.note()
    now[0] = 1.0
    limiter.note()
    assert limiter.wait_time() == 59.0
    now[0] = 59.5
    assert limiter.wait_time() == 0.5
    now[0] = 60.0
    assert limiter.wait_time() == 0


def test_exec_tables_under_the_agent(tmp_path: Path) -> None:
    state, ignoring = tmp_path / "served", tmp_path / "ignoring"
    toml = f"""
[[exec]]
name = "legacy"
command = ["{PYTHON}", "{CHILD}", "serve", "P", "{state}"]
env = {{ P = "db/web/password" }}
poll = "100ms"
debounce = "100ms"

[[exec]]
name = "stubborn"
command = ["{PYTHON}", "{CHILD}", "serve", "P", "{ignoring}", "ignore-term"]
env = {{ P = "db/web/password" }}
restart_on_change = false
grace = "1s"

[[exec]]
name = "crashing"
command = ["sh", "-c", "exit 4"]
poll = "100ms"
max_restarts = 2
restart_window = "1h"
"""
    pair, inbox, _ = prepare_agent(tmp_path, toml)
    v1, v2 = planted("V1"), planted("V2")
    publish(pair, {"db/web/password": v1})
    daemon = launch_agent(pair, inbox)
    try:
        wait_for(lambda: served(state) and served(ignoring), what="children", watch=tmp_path)
        daemon.drop(daemon.publish({"db/web/password": v2}))
        wait_for(lambda: len(served(state)) == 2, what="restart", watch=tmp_path)
        assert [d for _, d in served(state)] == [sha(v1), sha(v2)]
        # the new child may write its line before the agent records exec.restarted
        restarted = daemon.wait_until(
            lambda: [r for r in daemon.events("exec.restarted") if r["reason"] == "changed"],
            what="exec.restarted (changed)",
        )
        assert [(r["command"], r["changed"]) for r in restarted] == [
            ("legacy", "db/web/password@2")
        ]
        wait_for(
            lambda: [e for e in daemon.events("exec.exited") if e["restart_in"] > 0],
            what="crash loop held back",
            watch=tmp_path,
        )
        crashing = [e for e in daemon.events("exec.started") if e["command"] == "crashing"]
        assert len(crashing) == 3  # the first start and two restarts within the window
        assert len(served(ignoring)) == 1  # not restarted: restart_on_change = false
    finally:
        daemon.stop()
    stopped = {e["command"] for e in daemon.events("exec.stopped")}
    assert {"legacy", "stubborn"} <= stopped
    assert [e["command"] for e in daemon.events("exec.killed")] == ["stubborn"]
    for pid, _ in served(state) + served(ignoring):
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert v1 not in daemon.log().encode()
    assert v2 not in daemon.log().encode()


def test_a_missing_command_in_supervised_mode(tmp_path: Path) -> None:
    pair = loaded_pair(tmp_path, {"db/web/password": planted()})
    proc = subprocess.run(
        [PYTHON, "-m", "relay", *supervise(pair.ag), "no-such-command-xyz"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 127
    assert proc.stderr.decode().startswith("relay: error: command_not_found: ")


def _checks(messages: list[dict[str, str]]) -> int:
    return max((int(m["RELAY_CHECK"]) for m in messages if "RELAY_CHECK" in m), default=0)


def _restarts(messages: list[dict[str, str]]) -> int:
    return sum(m.get("RELAY_EVENT", "").split(" ", 1)[0] == "exec.restarted" for m in messages)


def _failures(messages: list[dict[str, str]]) -> int:
    return sum(m.get("RELAY_EVENT", "").startswith("exec.restart_failed ") for m in messages)


def test_a_secret_gone_keeps_cmd_running_and_is_reported_once(tmp_path: Path) -> None:
    pair = loaded_pair(tmp_path, {"db/web/password": planted(), "db/web/other": planted()})
    state = tmp_path / "served"
    notified = Notifications(tmp_path / "exec.notify")
    proc = spawn_serving(pair.ag, "100ms", state, notified)
    try:
        assert notified.wait_for(lambda ms: any(m.get("READY") == "1" for m in ms), 60), "ready"
        wait_for(lambda: served(state), what="first child", watch=tmp_path)
        ((child_pid, _),) = served(state)
        # relay speaks for the service; CMD, restarted at will, must not (ADR 0020)
        assert b"NOTIFY_SOCKET=" not in Path(f"/proc/{child_pid}/environ").read_bytes()
        assert pair.gateway("revoke", "plant7", "**").status == 0
        assert pair.gateway("grant", "plant7", "db/web/other").status == 0
        publish(pair, {})
        assert notified.wait_for(_failures, timeout=60), "no refused restart"
        denied = len(audit_records(pair, "secret.denied"))
        after = _checks(notified.messages) + 11  # ten whole checks after the refusing one
        assert notified.wait_for(lambda ms: _checks(ms) >= after, timeout=60), "checks stopped"
        # those ten checks saw the same refusal: neither retried nor reported again
        assert len(audit_records(pair, "exec.restart_failed")) == 1
        assert len(audit_records(pair, "secret.denied")) == denied
        assert _failures(notified.messages) == 1
        assert len(served(state)) == 1
        assert proc.poll() is None  # CMD keeps running with what it had
        reason = fields_of(audit_records(pair, "exec.restart_failed")[0])["reason"]
        assert reason == "not_found"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        notified.close()
    assert notified.messages[-1].get("RELAY_EVENT", "").startswith("exec.exited ")
    assert any(m.get("STOPPING") == "1" for m in notified.messages)
