"""Local rotation executors: set a new credential on a device or service of the isolated side.

Configured in ``relay.toml`` as ``[[rotation.executor]]`` tables (docs/rotation.md)::

    [[rotation.executor]]
    paths = ["db/historian/*"]          # glob patterns over secret paths
    kind = "command"                    # command | postgresql | ssh
    command = ["/usr/local/bin/set-pw"] # the new value on stdin, never argv; must exit 0
    verify = ["/usr/local/bin/try-pw"]  # optional: exit 0 if a value (stdin) works
    timeout = "30s"                     # default 30s: a hang is a failure
    length = 32                         # generated value (default 32, alnum)
    charset = "alnum"

Each executor has :meth:`apply` (raise :class:`ExecutorFailed` with ``failed`` or ``timeout``)
and :meth:`works` (does this value work now? ``None`` when it cannot tell), which crash recovery
uses to decide whether a candidate was applied. Values never go to argv, logs or errors.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass
from typing import Any, Protocol

from relay.codes import BAD_EXECUTOR, ROTATION_FAILED, ROTATION_TIMEOUT
from relay.durations import parse_duration
from relay.errors import RelayError, UsageError
from relay.paths import check_pattern, matches_any

DEFAULT_TIMEOUT = "30s"


class ExecutorFailed(RelayError):
    """An executor did not set the value (``failed``) or did not finish in time (``timeout``)."""

    code = ROTATION_FAILED


class Executor(Protocol):
    kind: str
    timeout: int

    def apply(self, value: bytes) -> None: ...

    def works(self, value: bytes) -> bool | None: ...


@dataclass(frozen=True)
class ExecutorConfig:
    """One ``[[rotation.executor]]`` table, checked."""

    paths: tuple[str, ...]
    kind: str
    timeout: int
    length: int
    charset: str
    options: dict[str, Any]


def executor_configs(raw: Any) -> list[ExecutorConfig]:
    """Check the ``rotation.executor`` tables; ``bad_executor`` on anything wrong."""
    from relay.generate import DEFAULT_CHARSET, DEFAULT_LENGTH, charset_of, check_length

    if not isinstance(raw, list):
        raise UsageError(
            "rotation.executor must be [[rotation.executor]] tables", code=BAD_EXECUTOR
        )
    configs = []
    for table in raw:
        if not isinstance(table, dict):
            raise UsageError("each rotation.executor must be a table", code=BAD_EXECUTOR)
        paths = table.get("paths")
        kind = table.get("kind")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise UsageError("rotation.executor needs paths = [PATTERN, …]", code=BAD_EXECUTOR)
        if kind not in KINDS:
            raise UsageError(
                f"rotation.executor kind must be one of {', '.join(KINDS)}", code=BAD_EXECUTOR
            )
        length = int(table.get("length", DEFAULT_LENGTH))
        charset = str(table.get("charset", DEFAULT_CHARSET))
        check_length(length)
        charset_of(charset)
        options = {k: v for k, v in table.items() if k not in _COMMON}
        configs.append(
            ExecutorConfig(
                tuple(check_pattern(p) for p in paths),
                str(kind),
                parse_duration(str(table.get("timeout", DEFAULT_TIMEOUT))),
                length,
                charset,
                options,
            )
        )
    return configs


def find_executor(raw: Any, path: str) -> tuple[ExecutorConfig, Executor] | None:
    """The first configured executor whose patterns match ``path``, built; ``None`` if none."""
    for config in executor_configs(raw):
        if matches_any(list(config.paths), path):
            return config, build(config)
    return None


def build(config: ExecutorConfig) -> Executor:
    """The executor of ``config`` (psycopg and paramiko load only for their kinds)."""
    if config.kind == "postgresql":
        from inner_agent.executor_postgres import PostgresExecutor

        return PostgresExecutor(config)
    if config.kind == "ssh":
        from inner_agent.executor_ssh import SshExecutor

        return SshExecutor(config)
    return CommandExecutor(config)


class CommandExecutor:
    """``command``: run a program with the value on stdin; exit 0 means it is set."""

    kind = "command"

    def __init__(self, config: ExecutorConfig) -> None:
        self.timeout = config.timeout
        self.command = _argv(config.options, "command")
        self.verify = _argv(config.options, "verify") if "verify" in config.options else None

    def apply(self, value: bytes) -> None:
        status = _run(self.command, value, self.timeout)
        if status != 0:
            raise ExecutorFailed(f"the command exited with status {status}", code=ROTATION_FAILED)

    def works(self, value: bytes) -> bool | None:
        if self.verify is None:
            return None
        try:
            return _run(self.verify, value, self.timeout) == 0
        except ExecutorFailed:
            return None


def _argv(options: dict[str, Any], key: str) -> list[str]:
    argv = options.get(key)
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise UsageError(f"a command executor needs {key} = [CMD, ARG, …]", code=BAD_EXECUTOR)
    return list(argv)


def _run(argv: list[str], value: bytes, timeout: int) -> int:
    """Run ``argv`` with ``value`` on stdin, nothing captured into logs; kill it at ``timeout``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        raise ExecutorFailed(
            f"cannot run {argv[0]}: {exc.strerror}", code=ROTATION_FAILED
        ) from None
    try:
        proc.communicate(value, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise ExecutorFailed(
            f"the command did not finish within {timeout}s", code=ROTATION_TIMEOUT
        ) from None
    return proc.returncode


def _kill(proc: subprocess.Popen[bytes]) -> None:
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


KINDS = ("command", "postgresql", "ssh")
_COMMON = {"paths", "kind", "timeout", "length", "charset"}
