"""Running a command with secrets in its environment, once or supervised.

Without supervision :func:`replace_process` execs CMD in place of relay: stdin, stdout, stderr,
signals and the exit status are CMD's own, exactly. With ``--restart-on-change``,
:func:`run_foreground` keeps relay as CMD's parent: signals sent to relay are forwarded (those a
terminal sends to its foreground group reach CMD directly and are not sent twice), CMD's exit
ends relay with the same status (a death by signal is re-raised), and a new version of a secret
CMD uses restarts it: the stop signal, a grace period, then SIGKILL. Restarts are debounced
(versions must hold still for ``debounce`` seconds) and rate limited (at most ``max_restarts``
per ``window``); each one is audited with paths and versions, never values, and told to a
service manager that asks (``NOTIFY_SOCKET``, :mod:`inner_agent.exec_status`).

:class:`ExecChild` runs the same supervision in a thread for ``[[exec]]`` in ``relay agent
run``, where a child that exits is restarted too (crash loops are held back by the same limit).
"""

from __future__ import annotations

import collections
import contextlib
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from inner_agent.exec_env import Resolved, child_environment, find_command, resolve
from inner_agent.exec_status import SupervisionStatus
from inner_agent.secret_source import SecretSource
from relay.codes import RATE_LIMIT
from relay.errors import RelayError
from relay.sdnotify import Notifier

FORWARDED = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
    signal.SIGALRM,
)
SI_KERNEL = 0x80  # sent by the kernel (a terminal's ^C): CMD, in our group, had it already

Record = Callable[..., None]  # record(event_type, **fields)


@dataclass(frozen=True)
class ExecSpec:
    """What to run and how to supervise it."""

    argv: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    template: str | None = None
    stop_signal: int = signal.SIGTERM
    grace: float = 10.0
    poll: float = 2.0
    debounce: float = 1.0
    max_restarts: int = 5
    window: float = 60.0
    name: str = ""
    watch: bool = True  # restart when a secret CMD uses gets a new version

    @property
    def label(self) -> str:
        return self.name or Path(self.argv[0]).name


class RestartLimiter:
    """At most ``limit`` restarts in any ``window`` seconds."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        self.limit, self.window, self.clock = max(limit, 1), window, clock
        self._times: collections.deque[float] = collections.deque()

    def wait_time(self) -> float:
        """Seconds until a restart is allowed (0 when it is)."""
        now = self.clock()
        while self._times and now - self._times[0] >= self.window:
            self._times.popleft()
        return 0.0 if len(self._times) < self.limit else self._times[0] + self.window - now

    def note(self) -> None:
        self._times.append(self.clock())


class Supervisor:
    """One supervised CMD: start, watch versions, restart, stop."""

    def __init__(
        self,
        spec: ExecSpec,
        source: SecretSource,
        record: Record,
        base_env: Mapping[str, str],
        clock: Callable[[], float] = time.monotonic,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.spec, self.source, self.record = spec, source, record
        self.base_env = dict(base_env)
        self.clock = clock
        self.preexec = preexec
        self.limiter = RestartLimiter(spec.max_restarts, spec.window, clock)
        self.child: subprocess.Popen[bytes] | None = None
        self.used: dict[str, int] = {}
        self._pending: dict[str, int | None] | None = None
        self._pending_since = 0.0
        self._delayed = False
        self._blocked: dict[str, int | None] | None = None  # versions a restart failed on

    def start(self) -> None:
        """Resolve the secrets and start CMD; RelayError (with its code) if either fails."""
        self._launch(*self._prepare())

    def _prepare(self) -> tuple[Resolved, dict[str, str], str]:
        resolved = resolve(self.source, self.spec.pairs, self.spec.template)
        env = child_environment(self.base_env, resolved)
        return resolved, env, find_command(self.spec.argv[0], env)

    def _launch(self, resolved: Resolved, env: dict[str, str], command: str) -> None:
        self.child = subprocess.Popen(
            [command, *self.spec.argv[1:]],
            env=env,
            preexec_fn=self.preexec,  # noqa: PLW1509 - only the single-threaded CLI sets it
        )
        self.used = resolved.used
        self._started(resolved)

    def _started(self, resolved: Resolved) -> None:
        assert self.child is not None  # noqa: S101 - just started
        self.record(
            "exec.started",
            command=self.spec.label,
            pid=self.child.pid,
            versions=resolved.describe(),
        )

    def due_change(self) -> dict[str, int | None] | None:
        """New versions that held still for ``debounce`` seconds and may restart CMD now."""
        if not self.used or not self.spec.watch:
            return None
        current = self.source.versions(self.used)
        if current in (self.used, self._blocked):
            self._pending = None
            return None
        now = self.clock()
        if current != self._pending:
            self._pending, self._pending_since = current, now
            return None
        if now - self._pending_since < self.spec.debounce:
            return None
        if self.limiter.wait_time() > 0:
            if not self._delayed:
                self.record("exec.restart_delayed", command=self.spec.label, reason=RATE_LIMIT)
                self._delayed = True
            return None
        return current

    def restart(self, reason: str, changed: dict[str, int | None] | None = None) -> None:
        """Start CMD again with the current secrets, stopping the running one first; if the
        secrets cannot be read, the running CMD is left alone (RelayError)."""
        old = dict(self.used)
        try:
            prepared = self._prepare()
        except RelayError:
            self._blocked = changed  # tried once; the next change tries again
            raise
        self.limiter.note()
        self._pending, self._delayed = None, False
        self.stop()
        self._launch(*prepared)
        moved = " ".join(f"{p}@{v}" for p, v in sorted(self.used.items()) if old.get(p) != v) or (
            " ".join(f"{p}@{v}" for p, v in sorted((changed or {}).items()))
        )
        assert self.child is not None  # noqa: S101 - just started
        self.record(
            "exec.restarted",
            command=self.spec.label,
            reason=reason,
            changed=moved,
            pid=self.child.pid,
        )

    def stop(self) -> int | None:
        """The stop signal, ``grace`` seconds, then SIGKILL; the exit status (None: no child)."""
        child = self.child
        if child is None:
            return None
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(self.spec.stop_signal)
            try:
                child.wait(self.spec.grace)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                self.record(
                    "exec.killed", command=self.spec.label, pid=child.pid, grace=self.spec.grace
                )
        return child.returncode


# -- relay agent exec --restart-on-change (foreground) ------------------------------------------


def _unblock() -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def run_foreground(spec: ExecSpec, source: SecretSource, record: Record, umask: int = 0o022) -> int:
    """Supervise CMD until it exits; returns its exit status (negative: killed by that signal).
    With ``NOTIFY_SOCKET`` set, relay tells the manager what it does and CMD does not inherit
    the variable (:mod:`inner_agent.exec_status`)."""
    waited = {*FORWARDED, signal.SIGCHLD}

    def in_child() -> None:  # between fork and exec: the caller's umask, no blocked signals
        os.umask(umask)
        _unblock()

    signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    status = SupervisionStatus(Notifier.from_environ(), record)  # before os.environ is copied
    supervisor = Supervisor(spec, source, status.record, os.environ, preexec=in_child)
    try:
        supervisor.start()
    except BaseException:
        _unblock()
        raise
    return _supervise_loop(supervisor, waited, status)


def _supervise_loop(
    supervisor: Supervisor, waited: set[signal.Signals], status: SupervisionStatus
) -> int:
    """Forward signals, restart on change; after a forwarded stop (TERM or INT) CMD gets
    ``grace`` seconds before SIGKILL."""
    spec = supervisor.spec
    kill_at: float | None = None
    while True:
        child = supervisor.child
        assert child is not None  # noqa: S101 - started by the caller
        wait = (
            spec.poll if kill_at is None else max(0.01, min(spec.poll, kill_at - time.monotonic()))
        )
        info = signal.sigtimedwait(waited, wait)
        if info is not None and info.si_signo != signal.SIGCHLD:
            if kill_at is None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                kill_at = time.monotonic() + spec.grace
                status.stopping()
            if info.si_code != SI_KERNEL:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(info.si_signo)
        exit_status = child.poll()
        if exit_status is not None:
            supervisor.record("exec.exited", command=spec.label, status=exit_status)
            _unblock()
            return exit_status
        if kill_at is None:
            _restart_if_due(supervisor)
            status.checked()
        elif time.monotonic() >= kill_at:
            child.kill()
            supervisor.record("exec.killed", command=spec.label, pid=child.pid, grace=spec.grace)
            kill_at = float("inf")


def _restart_if_due(supervisor: Supervisor) -> None:
    try:
        changed = supervisor.due_change()
        if changed is not None:
            supervisor.restart("changed", changed)
    except RelayError as exc:  # a secret gone or refused: keep CMD, say why, try again
        supervisor.record("exec.restart_failed", command=supervisor.spec.label, reason=exc.code)


def exit_like(status: int) -> int:
    """Leave the way CMD did: re-raise its fatal signal (no core dump), or return its status
    (``128 + N`` when the signal cannot kill us)."""
    if status >= 0:
        return status
    number = -status
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP have no handler
        signal.signal(number, signal.SIG_DFL)
    with contextlib.suppress(OSError, ValueError):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {number})
        os.kill(os.getpid(), number)
    return 128 + number


def replace_process(argv: tuple[str, ...], env: dict[str, str], umask: int = 0o022) -> None:
    """Exec ``argv`` in place of this process (never returns)."""
    command = find_command(argv[0], env)
    os.umask(umask)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores these; CMD must not
        signal.signal(sig, signal.SIG_DFL)
    os.execve(command, list(argv), env)  # noqa: S606 - argv from the operator, no shell


# -- [[exec]] under relay agent run ---------------------------------------------------------------


class ExecChild(threading.Thread):
    """A supervised ``[[exec]]`` child of the agent service: restarted when a secret it uses
    changes or when it exits (crash loops held back by the rate limit); stopped with the agent."""

    def __init__(self, supervisor: Supervisor) -> None:
        super().__init__(name=f"relay-exec-{supervisor.spec.label}", daemon=True)
        self.supervisor = supervisor
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._failures = 0

    def run(self) -> None:
        sup = self.supervisor
        while not self._stopping.is_set():
            with self._lock:
                if self._stopping.is_set():
                    break
                self._step(sup)
            self._stopping.wait(sup.spec.poll)

    def _step(self, sup: Supervisor) -> None:
        try:
            self._advance(sup)
        except RelayError as exc:  # a secret refused, the command gone: back off, try again
            self._failures += 1
            sup.record(
                "exec.failed", command=sup.spec.label, reason=exc.code, attempt=self._failures
            )
            self._stopping.wait(min(300.0, max(sup.spec.poll, 1.0) * 2 ** min(self._failures, 8)))
        else:
            self._failures = 0

    def _advance(self, sup: Supervisor) -> None:
        label = sup.spec.label
        if sup.child is None:
            sup.start()
            return
        status = sup.child.poll()
        if status is not None:
            delay = sup.limiter.wait_time()
            sup.record("exec.exited", command=label, status=status, restart_in=round(delay, 1))
            if delay > 0:
                self._stopping.wait(delay)
                if self._stopping.is_set():
                    return
            sup.restart("exited")
            return
        changed = sup.due_change()
        if changed is not None:
            sup.restart("changed", changed)

    def stop(self) -> None:
        """Stop the child (stop signal, grace, SIGKILL) and the thread."""
        self._stopping.set()
        with self._lock:
            status = self.supervisor.stop()
        if status is not None:
            self.supervisor.record(
                "exec.stopped", command=self.supervisor.spec.label, status=status
            )
        self.join(2.0)
