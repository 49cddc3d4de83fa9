"""Helpers for the consumption tests: an agent loaded with planted values, relay as a real
process, audit records, and a scan of every process's argv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import RELAY, Pair, make_pair, run_relay


def planted(tag: str = "V") -> bytes:
    """A unique value that can be grepped for."""
    return f"PLANTED-{tag}-{os.urandom(10).hex()}".encode()


def loaded_pair(root: Path, values: dict[str, bytes], *put_args: str) -> Pair:
    """A gateway/agent pair with ``values`` granted, exported and imported."""
    pair = make_pair(root)
    assert pair.gateway("grant", "plant7", "**").status == 0
    publish(pair, values, *put_args)
    return pair


def publish(pair: Pair, values: dict[str, bytes], *put_args: str) -> None:
    """Put ``values`` on the gateway and import the new bundle into the agent (in-process)."""
    for path, value in values.items():
        pair.put(path, value, *put_args)
    pair.export()
    result = pair.agent("import", str(pair.out), "--delete-after-import")
    assert result.status == 0, result.err


def relay_env(**extra: str) -> dict[str, str]:
    """The environment of a relay child process (no RELAY_* of the test runner)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(extra)
    return env


def spawn(*args: str, env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen[bytes]:
    """``relay ARGS`` as a real process."""
    return subprocess.Popen([*RELAY, *args], env=env or relay_env(), **popen)


def audit_records(pair: Pair, event_type: str | None = None) -> list[dict[str, Any]]:
    """The agent's audit records (JSON documents), optionally of one type."""
    result = run_relay("agent", "audit", "--home", str(pair.ag), "--json")
    assert result.status == 0, result.err
    docs = [json.loads(line) for line in result.out.splitlines() if line.strip()]
    return [d for d in docs if event_type is None or d.get("type") == event_type]


def fields_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The event fields of an audit JSON document (wherever the format nests them)."""
    return dict(doc.get("fields", doc))


def wait_for(
    condition: Callable[[], Any], timeout: float = 30.0, what: str = "", *, watch: Path
) -> Any:
    """``condition()`` once it is truthy: checked now and again at each change of a file under
    ``watch`` (inotify, through watchdog, recursively), so no sleep paces the wait."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    changed = threading.Event()

    class Changed(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type not in ("opened", "closed_no_write"):  # our own reads
                changed.set()

    observer = Observer()
    observer.schedule(Changed(), str(watch), recursive=True)
    observer.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            changed.clear()  # before the check: a change during it wakes the next wait
            value = condition()
            if value:
                return value
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {what or condition}"
            changed.wait(left)
    finally:
        observer.stop()
        observer.join(10)


def until_wall_clock(moment: float) -> None:
    """Let the wall clock pass ``moment``: the one wait on time itself, for a real process that
    judges a real expiry (no state to wait on; nothing else may use it)."""
    threading.Event().wait(max(0.0, moment - time.time()))
    assert time.time() >= moment


def all_cmdlines() -> list[bytes]:
    """The argv of every process we can read."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry / "cmdline").read_bytes())
            except OSError:
                continue
    return found


def every_file_bytes(*roots: Path) -> list[bytes]:
    return [p.read_bytes() for root in roots for p in root.rglob("*") if p.is_file()]


PYTHON = sys.executable


def prepare_agent(
    root: Path, toml: str = "", apps: dict[str, list[str]] | None = None
) -> tuple[Pair, Path, dict[str, dict[str, str]]]:
    """A pair whose agent has an inbox, a free API port, ``toml`` appended to its relay.toml
    and the given apps; returns (pair, inbox, credentials by app)."""
    pair = make_pair(root)
    assert pair.gateway("grant", "plant7", "**").status == 0
    inbox = root / "inbox"
    inbox.mkdir(mode=0o700)
    for key, value in {"agent.inbox": str(inbox), "api.listen": "127.0.0.1:0"}.items():
        assert pair.agent("config", "set", key, value).status == 0
    creds: dict[str, dict[str, str]] = {}
    for name, patterns in (apps or {}).items():
        allow = [arg for p in patterns for arg in ("--allow", p)]
        result = run_relay("agent", "app", "add", "--home", str(pair.ag), name, *allow, "--json")
        assert result.status == 0, result.err
        doc = json.loads(result.out)
        creds[name] = {"client_id": doc["client_id"], "client_secret": doc["client_secret"]}
    with (pair.ag / "relay.toml").open("a") as handle:
        handle.write("\n" + toml)
    return pair, inbox, creds


def launch_agent(
    pair: Pair,
    inbox: Path,
    log_name: str = "agent.log",
    env: dict[str, str] | None = None,
    apps: dict[str, dict[str, str]] | None = None,
) -> Any:
    """``relay agent run`` on ``pair`` as a real process (a :class:`tests.agent_daemon.Daemon`)."""
    from tests.agent_daemon import spawn_agent

    daemon = spawn_agent(pair, inbox, pair.root / log_name, relay_env(**(env or {})), apps or {})
    daemon.wait_listening()
    return daemon
