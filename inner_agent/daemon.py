"""``relay agent run``: the inner agent as a foreground service.

Threads: the main thread runs the HTTP server (uvicorn, asyncio) and owns the signals; one inbox
worker thread is the only importer (imports are serialised, each one transaction, run by a
short-lived child process so the decoded bundle's memory leaves with it:
:mod:`inner_agent.apply_child`, ADR 0022); a watchdog
observer wakes the worker on file events; an APScheduler thread rescans (missed events, media
mounted later), re-arms watches and checks freshness. SIGTERM or SIGINT stops the server, lets a
running import finish (or roll back with the process), and exits 0.

Under a service manager (``NOTIFY_SOCKET`` set, systemd ``Type=notify``) it speaks the
notification protocol (:mod:`relay.sdnotify`): ``READY=1`` once the API sockets are bound and the
inbox is watched (with ``RELAY_LISTEN=`` the API's addresses), ``STATUS=`` after each inbox pass
(``RELAY_SCAN=`` counts them), each event (``RELAY_EVENT=TYPE JSON``, the audit's facts, never
a value) and each batch committed to the audit chain (``RELAY_AUDITED=``), and ``STOPPING=1``.
Tests wait on these instead of polling.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from inner_agent import denials, events
from inner_agent.activation import ActivationJob
from inner_agent.apply_child import ChildImporter
from inner_agent.hardening import harden_process
from inner_agent.importer import AgentImporter
from inner_agent.inbox import Inbox
from inner_agent.service import AgentService
from inner_agent.service_config import ServiceSettings
from inner_agent.service_status import ServiceStatus
from inner_agent.store import AgentStore
from relay.codes import NOT_CONFIGURED
from relay.home import Home
from relay.sdnotify import Notifier

BENCH_ENV = "RELAY_API_BENCH"
STOP_JOIN_SECONDS = 2.0  # for the import in progress; the observer and audit get 1 s each
FRESHNESS_EVERY = 2
ROTATION_CHECK_EVERY = 60

_log = logging.getLogger("relay.agent")


class InboxWorker(threading.Thread):
    """Runs :meth:`Inbox.scan` when poked, when a file should have settled, or every
    ``idle`` seconds."""

    def __init__(
        self,
        inbox: Inbox,
        idle: float,
        failed: Callable[[str], None] = lambda _what: None,
        succeeded: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(name="relay-inbox", daemon=True)
        self.inbox = inbox
        self.idle = idle
        self.failed = failed
        self.succeeded = succeeded
        self._wake = threading.Event()
        self._stopping = threading.Event()

    def poke(self) -> None:
        """Scan now (a file event, the rescan job)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop after the file in hand (an import in progress completes its transaction)."""
        self._stopping.set()
        self._wake.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            delay: float | None = None
            try:
                delay = self.inbox.scan(self._stopping.is_set)
                self.succeeded()
            except Exception as exc:  # a bug must not kill the service; never log values
                _log.error("inbox scan failed: %s", type(exc).__name__)
                self.failed(type(exc).__name__)
            self._wake.wait(self.idle if delay is None else max(delay, 0.05))


class Watches:
    """watchdog watches on the inbox folders, re-armed when a folder appears or is remounted."""

    def __init__(self, folders: tuple[Path, ...], poke: Any) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        class Poke(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type not in ("opened", "closed_no_write"):
                    poke()

        self.folders = folders
        self.handler = Poke()
        self.observer = Observer()
        self._armed: dict[Path, tuple[Any, tuple[int, int]]] = {}

    def start(self) -> None:
        """Arm the watches that can be armed now and start the observer thread."""
        self.arm()
        self.observer.start()

    def arm(self) -> None:
        """Watch every folder that exists now; re-watch one whose identity changed."""
        for folder in self.folders:
            try:
                info = folder.stat()
            except OSError:
                continue
            identity = (info.st_dev, info.st_ino)
            current = self._armed.get(folder)
            if current is not None and current[1] == identity:
                continue
            if current is not None:
                with contextlib.suppress(Exception):
                    self.observer.unschedule(current[0])
            try:
                watch = self.observer.schedule(self.handler, str(folder), recursive=False)
            except OSError as exc:
                _log.warning("cannot watch %s: %s", folder, exc.strerror)
                continue
            self._armed[folder] = (watch, identity)

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(1.0)


def run_agent(home: Home) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status."""
    settings = ServiceSettings.from_config(home.config)
    _configure_logging()
    stopping = _StopFlag()
    stopping.install()
    harden_process()
    notifier = Notifier.from_environ()
    try:
        store = AgentStore.open(home)
        try:
            return _serve(home, store, settings, stopping, notifier)
        finally:
            store.close()
    except _StoppedEarly:
        _log.info("stopped before serving")
        return 0


def _serve(
    home: Home,
    store: AgentStore,
    settings: ServiceSettings,
    stopping: _StopFlag,
    notifier: Notifier,
) -> int:
    """Connect the events hook to the audit chain (and the notifier) for the life of the
    service."""
    from inner_agent.audit_writer import AuditWriter

    status = ServiceStatus(notifier)
    audit = AuditWriter(home, status.audit_written)
    audit.start()
    events.set_sink(audit.sink)
    events.subscribe(status.event)
    try:
        return _serve_with(home, store, settings, stopping, audit, status)
    finally:
        events.unsubscribe(status.event)
        audit.stop(1.0)
        events.set_sink(None)


def _serve_with(
    home: Home,
    store: AgentStore,
    settings: ServiceSettings,
    stopping: _StopFlag,
    audit: Any,
    status: ServiceStatus,
) -> int:
    from inner_agent.api import create_app
    from inner_agent.consumers import Consumers
    from inner_agent.http_server import bind_tcp, bind_unix, describe, make_server

    service = AgentService(store, home.store_path, settings, acknowledge=audit.acknowledge)
    consumers = Consumers(home)  # [[hooks]] and [[exec]]
    importer = AgentImporter(home, store, lambda: int(time.time()))
    inbox = Inbox(
        settings.inbox,
        ChildImporter(importer),  # each bundle applied in a child process (ADR 0022)
        consumers.chained(service.after_import),
        importer.limits.max_bundle_bytes,
        consume=_diode_folders(home, settings),
    )
    scan_ok = status.after_scan(service.scan_ok)
    worker = InboxWorker(inbox, float(settings.rescan_every), service.scan_failed, scan_ok)
    watches = Watches(settings.inbox, worker.poke)
    sockets = []
    if settings.listen is not None:
        sockets.append(bind_tcp(*settings.listen))
    if settings.unix_socket is not None:
        sockets.append(bind_unix(settings.unix_socket, settings.allowed_uids))
    app = create_app(service, bench=os.environ.get(BENCH_ENV) == "1")
    server = make_server(app, float(settings.read_timeout))
    stopping.server = server

    scheduler = _scheduler(home, store, settings, watches, worker, service)
    diode = _diode_receiver(home, settings)
    watches.start()
    worker.start()
    scheduler.start()
    if diode is not None:
        diode.start()
    for sock in sockets:
        _log.info("api listening on %s", describe(sock))
    events.record(
        "agent.started",
        inbox=",".join(str(p) for p in settings.inbox),
        pid=os.getpid(),
    )
    service.check_freshness()
    consumers.start()
    status.ready([describe(sock) for sock in sockets])
    try:
        if not stopping.requested:
            server.run(sockets=sockets)
    finally:
        status.stopping()
        consumers.stop()
        scheduler.shutdown(wait=False)
        if diode is not None:
            diode.stop()
        watches.stop()
        worker.stop()
        worker.join(STOP_JOIN_SECONDS)
        for sock in sockets:
            sock.close()
        if settings.unix_socket is not None:
            with contextlib.suppress(FileNotFoundError):
                settings.unix_socket.unlink()
        service.denials.flush(force=True)
        events.record("agent.stopped", signal=stopping.signal_name)
    return 0


def _scheduler(
    home: Home,
    store: AgentStore,
    settings: ServiceSettings,
    watches: Watches,
    worker: InboxWorker,
    service: AgentService,
) -> Any:
    """The rescan, freshness, rotation and denial-summary jobs (not started)."""
    from apscheduler.schedulers.background import BackgroundScheduler

    def rescan() -> None:
        watches.arm()
        worker.poke()

    scheduler = BackgroundScheduler(daemon=True)
    scheduler.add_job(
        rescan,
        "interval",
        seconds=settings.rescan_every,
        id="rescan",
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(
        service.check_freshness,
        "interval",
        seconds=FRESHNESS_EVERY,
        id="freshness",
        max_instances=1,
        coalesce=True,
    )
    _add_rotation_jobs(scheduler, home, store, service)
    scheduler.add_job(service.denials.flush, "interval", seconds=denials.INTERVAL, id="denials")
    return scheduler


def _add_rotation_jobs(scheduler: Any, home: Home, store: AgentStore, service: Any) -> None:
    """Pending versions switch on time (every second); interrupted rotations and the expiry
    window are checked now and every minute."""
    activation = ActivationJob(store, service.clock, lambda: service.refresh(force=True))
    scheduler.add_job(
        activation.run, "interval", seconds=1, id="activate", max_instances=1, coalesce=True
    )
    scheduler.add_job(
        lambda: _rotation_checks(home),
        "interval",
        seconds=ROTATION_CHECK_EVERY,
        id="rotation",
        max_instances=1,
        coalesce=True,
    )
    _rotation_checks(home)


def _rotation_checks(home: Home) -> None:
    """Resolve a local rotation interrupted by a crash, and request rotation of secrets inside
    ``rotation.expiry_window`` (inner_agent/rotation.py). Never fatal to the service."""
    from inner_agent.rotation import recover, request_expiring
    from relay.errors import RelayError

    now = int(time.time())
    try:
        for result in recover(home, now):  # each step is its own audit record
            _log.info("interrupted rotation of %s: %s", result.path, result.status)
        for path in request_expiring(home, now):
            _log.info("rotation of %s requested (expiry window)", path)
    except RelayError as exc:
        _log.error("rotation check failed: %s", exc.code)


class DiodeReceiver(threading.Thread):
    """``diode.listen``: receive bundles from a data diode straight into the first inbox folder.
    Files appear there only whole and checked (temp name, rename), so the watches apply them."""

    def __init__(self, listen: str, folder: Path) -> None:
        from relay.diode.receiver import open_socket
        from relay.netaddr import parse_listen

        super().__init__(name="relay-diode", daemon=True)
        self.folder = folder
        self.sock = open_socket(*parse_listen(listen))
        self._stop_event = threading.Event()
        host, port = self.sock.getsockname()[:2]
        _log.info("diode receiver listening on %s:%s, writing to %s", host, port, folder)

    def run(self) -> None:
        from relay.diode.receiver import receive_forever

        receive_forever(
            self.sock, self.folder, self._stop_event, lambda line: _log.info("diode: %s", line)
        )

    def stop(self) -> None:
        self._stop_event.set()
        self.join(STOP_JOIN_SECONDS)
        self.sock.close()


def _diode_receiver(home: Home, settings: ServiceSettings) -> DiodeReceiver | None:
    from relay.errors import UsageError

    listen = str(home.config.get("diode.listen"))
    if not listen:
        return None
    if not settings.inbox:
        raise UsageError(
            "diode.listen needs agent.inbox (where received bundles go)", code=NOT_CONFIGURED
        )
    return DiodeReceiver(listen, settings.inbox[0])


def _diode_folders(home: Home, settings: ServiceSettings) -> tuple[Path, ...]:
    """The folder the diode receiver writes into, if it runs: the agent owns what lands there."""
    if not str(home.config.get("diode.listen")) or not settings.inbox:
        return ()
    return (settings.inbox[0],)


class _StoppedEarly(Exception):
    """A signal arrived before the server ran: nothing to finish, stop at once."""


class _StopFlag:
    """SIGTERM/SIGINT: ask the server to stop (a second signal forces it). Before the server
    exists nothing is in progress (no import runs yet), so the signal stops start-up at once."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self.server: Any = None

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.requested and self.server is not None:
            self.server.force_exit = True
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        if self.server is None:
            raise _StoppedEarly
        self.server.should_exit = True


def _configure_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("apscheduler", "watchdog"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
