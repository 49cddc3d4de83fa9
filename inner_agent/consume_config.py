"""``[[hooks]]`` and ``[[exec]]`` in an agent's ``relay.toml``, read and checked together.

Example::

    [[hooks]]
    name = "web-config"                       # optional; names the hook in audit records
    paths = ["db/web/*"]
    render = { template = "/etc/relay/web.conf.tmpl", out = "/run/web/web.conf", mode = "0640" }

    [[hooks]]
    paths = ["db/web/*"]
    signal = { pidfile = "/run/web/web.pid", name = "HUP" }
    timeout = "30s"                           # killed at the limit (default 30s)
    debounce = "2s"                           # quiet time after an import (default 2s)
    retries = 3                               # further attempts, with doubling backoff

    [[exec]]
    name = "legacy"
    command = ["/opt/legacy/bin/server", "--port", "8080"]
    env = { DB_PASSWORD = "db/web/password" }
    restart_on_change = true
    stop_signal = "TERM"
    grace = "10s"

A hook has exactly one action: ``run`` (argv, no shell), ``render``, ``signal`` or
``systemctl`` (``["reload", "UNIT"]``, also ``restart`` or ``try-reload-or-restart``). Bad
tables are refused with ``bad_config`` naming the table, before the service starts.
"""

from __future__ import annotations

import re
import signal
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay.codes import BAD_CONFIG, BAD_DURATION, BAD_SIGNAL
from relay.durations import parse_duration
from relay.errors import UsageError
from relay.paths import check_pattern

ACTIONS = ("run", "render", "signal", "systemctl")
SYSTEMCTL_VERBS = ("reload", "restart", "try-restart", "try-reload-or-restart", "reload-or-restart")
_FINE = re.compile(r"(\d+(?:\.\d+)?)ms\Z")


def parse_seconds(text: str | float) -> float:
    """Seconds from ``30s``/``15m``/``2h`` (see :mod:`relay.durations`), ``250ms`` or a number."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text <= 0:
            raise UsageError(f"duration {text!r} must be positive", code=BAD_DURATION)
        return float(text)
    match = _FINE.match(str(text).strip())
    if match:
        return max(float(match.group(1)) / 1000, 0.001)
    return float(parse_duration(str(text)))


def parse_signal(text: str | int) -> int:
    """``TERM``, ``SIGTERM`` or ``15`` as a signal number (``bad_signal`` otherwise)."""
    name = str(text).strip().upper()
    try:
        if name.isdigit():
            return int(signal.Signals(int(name)))
        return int(signal.Signals["SIG" + name.removeprefix("SIG")])
    except (KeyError, ValueError):
        raise UsageError(f"unknown signal {text!r}", code=BAD_SIGNAL) from None


@dataclass(frozen=True)
class HookSpec:
    """One ``[[hooks]]`` table."""

    name: str
    paths: tuple[str, ...]
    action: str
    argv: tuple[str, ...] = ()
    template: Path | None = None
    out: Path | None = None
    mode: int = 0o600
    owner: str | None = None
    pidfile: Path | None = None
    signal: int = signal.SIGHUP
    timeout: float = 30.0
    debounce: float = 2.0
    retries: int = 3
    backoff: float = 1.0


@dataclass(frozen=True)
class ExecTable:
    """One ``[[exec]]`` table."""

    name: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    env_template: Path | None
    restart_on_change: bool
    stop_signal: int
    grace: float
    poll: float
    debounce: float
    max_restarts: int
    window: float


def read_tables(config_path: Path) -> tuple[list[HookSpec], list[ExecTable]]:
    """The hooks and exec children of ``relay.toml`` (empty lists when it has none)."""
    try:
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], []
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{config_path} is not valid TOML: {exc}", code=BAD_CONFIG) from None
    hooks = [_hook(i, t) for i, t in enumerate(_tables(data, "hooks"), start=1)]
    execs = [_exec(i, t) for i, t in enumerate(_tables(data, "exec"), start=1)]
    names = [h.name for h in hooks]
    if len(set(names)) != len(names):
        raise UsageError("two [[hooks]] have the same name", code=BAD_CONFIG)
    return hooks, execs


def _tables(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise UsageError(f"{key} must be written as [[{key}]] tables", code=BAD_CONFIG)
    return value


def _fail(where: str, message: str) -> UsageError:
    return UsageError(f"{where}: {message}", code=BAD_CONFIG)


def _argv(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        raise _fail(where, "a command is a non-empty list of strings (argv, no shell)")
    return tuple(value)


def _hook(index: int, table: dict[str, Any]) -> HookSpec:
    where = f"[[hooks]] #{index}"
    known = {"name", "paths", "timeout", "debounce", "retries", "backoff", *ACTIONS}
    unknown = set(table) - known
    if unknown:
        raise _fail(where, f"unknown keys {sorted(unknown)}")
    actions = [a for a in ACTIONS if a in table]
    if len(actions) != 1:
        raise _fail(where, "give exactly one of run, render, signal, systemctl")
    paths = table.get("paths")
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise _fail(where, 'paths = ["PATTERN", …] is required')
    try:
        common: dict[str, Any] = {
            "name": str(table.get("name") or f"hook{index}"),
            "paths": tuple(check_pattern(p) for p in paths),
            "action": actions[0],
            "timeout": parse_seconds(table.get("timeout", "30s")),
            "debounce": parse_seconds(table.get("debounce", "2s")),
            "retries": int(table.get("retries", 3)),
            "backoff": parse_seconds(table.get("backoff", "1s")),
        }
        return HookSpec(**common, **_action(where, actions[0], table[actions[0]]))
    except UsageError as exc:
        raise _fail(where, exc.message) from None


def _action(where: str, action: str, value: Any) -> dict[str, Any]:
    if action == "run":
        return {"argv": _argv(where, value)}
    if action == "systemctl":
        argv = _argv(where, value)
        if len(argv) != 2 or argv[0] not in SYSTEMCTL_VERBS:
            raise _fail(where, f"systemctl = [VERB, UNIT] with VERB in {SYSTEMCTL_VERBS}")
        return {"argv": argv}
    if not isinstance(value, dict):
        raise _fail(where, f"{action} must be an inline table")
    if action == "render":
        from inner_agent.render import parse_mode

        if not value.get("template") or not value.get("out"):
            raise _fail(where, "render needs template and out")
        return {
            "template": Path(str(value["template"])),
            "out": Path(str(value["out"])),
            "mode": parse_mode(str(value.get("mode", "0600"))),
            "owner": str(value["owner"]) if value.get("owner") else None,
        }
    if not value.get("pidfile"):
        raise _fail(where, "signal needs pidfile")
    return {
        "pidfile": Path(str(value["pidfile"])),
        "signal": parse_signal(value.get("name", "HUP")),
    }


def _exec(index: int, table: dict[str, Any]) -> ExecTable:
    where = f"[[exec]] #{index}"
    from inner_agent.exec_env import parse_env_options

    env = table.get("env", {})
    if not isinstance(env, dict):
        raise _fail(where, 'env = { VAR = "PATH" } is an inline table')
    try:
        return ExecTable(
            name=str(table.get("name") or f"exec{index}"),
            argv=_argv(where, table.get("command")),
            env=parse_env_options([f"{k}={v}" for k, v in env.items()]),
            env_template=Path(str(table["env_file"])) if table.get("env_file") else None,
            restart_on_change=bool(table.get("restart_on_change", True)),
            stop_signal=parse_signal(table.get("stop_signal", "TERM")),
            grace=parse_seconds(table.get("grace", "10s")),
            poll=parse_seconds(table.get("poll", "1s")),
            debounce=parse_seconds(table.get("debounce", "1s")),
            max_restarts=int(table.get("max_restarts", 5)),
            window=parse_seconds(table.get("restart_window", "60s")),
        )
    except UsageError as exc:
        raise _fail(where, exc.message) from None
