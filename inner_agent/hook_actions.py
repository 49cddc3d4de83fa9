"""One hook action, carried out once: a command with a time limit and bounded output, a signal
to the process named by a pid file, or a render. The caller decides when and how often.

A command runs without a shell, in its own session (so the time limit kills everything it
started), with relay's unlocking variables removed from its environment and ``RELAY_HOOK``,
``RELAY_PATHS`` and ``RELAY_CHANGED`` (``path@version`` lists, never values) added. Its
stdout and stderr are drained to the end but only the first :data:`OUTPUT_CAP` bytes are kept.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from inner_agent.consume_config import HookSpec
from inner_agent.exec_env import WITHHELD
from relay.errors import RelayError

OUTPUT_CAP = 16 * 1024
HOOK_FAILED = "hook_failed"
TIMEOUT = "timeout"


@dataclass(frozen=True)
class ActionResult:
    """How one attempt went: ``reason`` is ``None`` on success, else a stable code."""

    reason: str | None
    seconds: float
    output: bytes = b""
    output_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.reason is None


def run_command(
    hook: HookSpec, argv: tuple[str, ...], variables: Mapping[str, str]
) -> ActionResult:
    """Run ``argv`` with a time limit; ``exit_N``, ``killed_by_N``, ``timeout`` or
    ``command_not_found`` as the reason of a failure."""
    env = {k: v for k, v in os.environ.items() if k not in WITHHELD}
    env.update(variables)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError:
        return ActionResult("command_not_found", time.monotonic() - started)
    reader = _Drain(proc)
    reader.start()
    try:
        status = proc.wait(hook.timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        status = None
    reader.join(2.0)
    with contextlib.suppress(ProcessLookupError):  # whatever it left behind in its session
        os.killpg(proc.pid, signal.SIGKILL)
    took = time.monotonic() - started
    if status is None:
        reason: str | None = TIMEOUT
    elif status < 0:
        reason = f"killed_by_{-status}"
    else:
        reason = None if status == 0 else f"exit_{status}"
    return ActionResult(reason, took, bytes(reader.kept), reader.total)


class _Drain(threading.Thread):
    """Reads a child's output to the end, keeping only the first :data:`OUTPUT_CAP` bytes."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        super().__init__(name="relay-hook-output", daemon=True)
        self.proc = proc
        self.kept = bytearray()
        self.total = 0

    def run(self) -> None:
        stream = self.proc.stdout
        assert stream is not None  # noqa: S101 - opened with PIPE
        while chunk := stream.read(65536):
            self.total += len(chunk)
            room = OUTPUT_CAP - len(self.kept)
            if room > 0:
                self.kept += chunk[:room]
        stream.close()


def send_signal(hook: HookSpec) -> ActionResult:
    """Signal the process whose pid is in ``hook.pidfile``."""
    started = time.monotonic()
    assert hook.pidfile is not None  # noqa: S101 - checked when the config was read
    try:
        text = hook.pidfile.read_text(encoding="ascii", errors="replace").strip()
        pid = int(text.split()[0]) if text else 0
    except (OSError, ValueError):
        return ActionResult("no_pidfile", time.monotonic() - started)
    if pid <= 1:
        return ActionResult("bad_pidfile", time.monotonic() - started)
    try:
        os.kill(pid, hook.signal)
    except ProcessLookupError:
        return ActionResult("no_process", time.monotonic() - started)
    except PermissionError:
        return ActionResult("not_permitted", time.monotonic() - started)
    return ActionResult(None, time.monotonic() - started)


def render_action(hook: HookSpec, rendered_content: bytes) -> tuple[ActionResult, bool]:
    """Write rendered content to ``hook.out`` (only when it changed); ``(result, written)``."""
    from inner_agent.render import parse_owner, write_if_changed

    started = time.monotonic()
    assert hook.out is not None  # noqa: S101 - checked when the config was read
    try:
        owner = parse_owner(hook.owner) if hook.owner else None
        written = write_if_changed(hook.out, rendered_content, hook.mode, owner)
    except RelayError as exc:
        return ActionResult(exc.code, time.monotonic() - started), False
    return ActionResult(None, time.monotonic() - started), written


def template_text(path: Path | None) -> str:
    """A render hook's template (read on every run, so edits need no restart)."""
    from inner_agent.render import read_template

    assert path is not None  # noqa: S101 - checked when the config was read
    return read_template(path)
