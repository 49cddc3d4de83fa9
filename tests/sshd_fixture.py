"""A real OpenSSH ``sshd`` on a free loopback port, as a child of the test run.

Reusable by any test that needs an SFTP server (transport tests, end-to-end scenarios)::

    from tests.sshd_fixture import SshServer, running_sshd

    @pytest.fixture
    def sshd(tmp_path: Path) -> Iterator[SshServer]:
        with running_sshd(tmp_path / "sshd") as server:
            yield server

    def test_push(sshd: SshServer) -> None:
        dest = open_destination(sshd.url(sshd.data_dir), sshd.options())
        dest.put("a.bundle", b"...")

(The module also defines that ``sshd`` fixture, for ``pytest_plugins = ["tests.sshd_fixture"]``
in a module that does not import this one itself.)

:func:`start_sshd` builds everything in a private folder: a host key (ed25519 unless
``host_key_kind`` says ``rsa`` or ``ecdsa``), a client key pair in
``authorized_keys``, a pinned ``known_hosts`` line for ``[127.0.0.1]:PORT``, an ``sshd_config``,
and a ``data`` folder for bundles. The server runs as ``sshd -D -e -f CONFIG`` with its log in
``sshd.log`` (``LogLevel VERBOSE``, so connection attempts can be counted). It logs in the user
that runs the tests (root in CI: ``PermitRootLogin prohibit-password``); ``StrictModes no`` and
``UsePAM no`` keep it independent of the machine's setup. Only 127.0.0.1 is ever used.

:class:`OpenWatch` (inotify) tells which files on the server were opened, to prove that a file
was rejected without being read. ``read_only=True`` serves SFTP with ``internal-sftp -R``: every
write request is refused with ``permission denied``, the way a read-only account on a staging
server behaves, which also works when the tests run as root (who is not stopped by file modes).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import getpass
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from relay.transport.base import TransportOptions

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 30.0  # a backstop: the wait ends at the event (seconds on a loaded machine)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def make_key(path: Path, kind: str = "ed25519") -> Path:
    """Create an unencrypted key pair ``path`` / ``path.pub`` with ssh-keygen."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


def public_key_text(private_key: Path) -> str:
    """``TYPE BASE64`` of the public half of ``private_key``."""
    kind, blob, *_ = Path(f"{private_key}.pub").read_text(encoding="ascii").split()
    return f"{kind} {blob}"


@dataclass
class SshServer:
    """A running (or stopped) sshd and the client material to reach it."""

    root: Path
    port: int
    read_only: bool = False
    host_key_kind: str = "ed25519"
    host: str = LOOPBACK
    user: str = field(default_factory=getpass.getuser)
    process: subprocess.Popen[bytes] | None = None

    @property
    def host_key(self) -> Path:
        return self.root / f"ssh_host_{self.host_key_kind}_key"

    @property
    def identity_file(self) -> Path:
        """The client's private key (authorised on the server)."""
        return self.root / "client_key"

    @property
    def known_hosts(self) -> Path:
        """A known_hosts file pinning the server's current host key."""
        return self.root / "known_hosts"

    @property
    def data_dir(self) -> Path:
        """An empty folder on the server for bundles (absolute path)."""
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "sshd.log"

    @property
    def config_path(self) -> Path:
        return self.root / "sshd_config"

    def url(self, path: Path | str) -> str:
        """``sftp://USER@127.0.0.1:PORT/ABS/PATH`` for an absolute ``path``."""
        return f"sftp://{self.user}@{self.host}:{self.port}{path}"

    def options(self, **extra: str) -> TransportOptions:
        """Transport options with this server's identity file and known_hosts."""
        return TransportOptions(
            identity_file=self.identity_file, known_hosts=self.known_hosts, extra=dict(extra)
        )

    def known_hosts_line(self) -> str:
        return f"[{self.host}]:{self.port} {public_key_text(self.host_key)}\n"

    def connections(self) -> int:
        """How many TCP connections sshd has accepted so far (from its log)."""
        if not self.log_path.exists():
            return 0
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return text.count("Connection from ")

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start sshd and wait until it listens."""
        if self.process is not None and self.process.poll() is None:
            return
        self._write_config()
        if os.geteuid() == 0:  # sshd refuses to start without its privilege separation folder
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        before = self._log_text().count("Server listening on")
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        self._wait_listening(before)

    def stop(self) -> None:
        """Kill sshd and every session it forked (each session is its own process group)."""
        if self.process is None:
            return
        _kill([*_descendants(self.process.pid), self.process.pid])
        self.process.wait(timeout=10)
        self.process = None

    def kill_sessions(self) -> None:
        """Kill the per-connection sshd processes only: live transfers break, sshd listens on.
        Returns once they are gone (a pidfd each, readable at exit): their sockets are closed."""
        if self.process is None:
            return
        _kill_and_wait(_descendants(self.process.pid))

    def restart(self) -> None:
        self.stop()
        self.start()

    def rotate_host_key(self) -> None:
        """Give the server a new host key (restarts it); ``known_hosts`` keeps the old one."""
        self.stop()
        for path in (self.host_key, Path(f"{self.host_key}.pub")):
            path.unlink()
        make_key(self.host_key, self.host_key_kind)
        self.start()

    # -- internals ----------------------------------------------------------------------------

    def _write_config(self) -> None:
        sftp = "internal-sftp -R" if self.read_only else "internal-sftp"
        self.config_path.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    f"ListenAddress {self.host}",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "LogLevel VERBOSE",
                    "MaxStartups 64",
                    f"Subsystem sftp {sftp}",
                    "",
                ]
            ),
            encoding="ascii",
        )

    def _log_text(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def _wait_listening(self, before: int) -> None:
        """Until sshd logs that it listens (one more time than ``before``): re-read at each write
        to its log (inotify, no polling)."""
        from tests.file_events import wait_for

        process = self.process
        if process is None:
            raise RuntimeError("sshd was not started")

        def listening_or_exited() -> bool:
            return (
                process.poll() is not None or self._log_text().count("Server listening on") > before
            )

        with contextlib.suppress(AssertionError):  # timed out: told below
            wait_for(
                listening_or_exited, START_TIMEOUT, watch=self.log_path.parent, recursive=False
            )
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited early: {self._log_text()[-2000:]}")
        if self._log_text().count("Server listening on") <= before:
            raise RuntimeError(f"sshd did not start within {START_TIMEOUT} s")


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _kill_and_wait(pids: list[int], timeout: float = 10.0) -> None:
    """SIGKILL ``pids`` and block until each has exited (pidfd readable; not our children, so
    no waitpid). A process exits only after its files are closed."""
    fds = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            fds.append(os.pidfd_open(pid))
    try:
        for fd in fds:
            with contextlib.suppress(ProcessLookupError):  # gone already
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        for fd in fds:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                raise RuntimeError(f"an sshd session survived SIGKILL for {timeout} s")
    finally:
        for fd in fds:
            os.close(fd)


def _descendants(root: int) -> list[int]:
    """Every live process below ``root``, read from /proc (children may call setsid)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
    found: list[int] = []
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        found.extend(children)
        frontier.extend(children)
    return found


def prepare_sshd(
    root: Path, *, read_only: bool = False, port: int | None = None, host_key_kind: str = "ed25519"
) -> SshServer:
    """Lay out keys, authorized_keys, known_hosts and the data folder; do not start."""
    root.mkdir(parents=True, exist_ok=True)
    server = SshServer(
        root=root, port=port or free_port(), read_only=read_only, host_key_kind=host_key_kind
    )
    make_key(server.host_key, host_key_kind)
    make_key(server.identity_file)
    (root / "authorized_keys").write_text(
        public_key_text(server.identity_file) + "\n", encoding="ascii"
    )
    server.known_hosts.write_text(server.known_hosts_line(), encoding="ascii")
    server.data_dir.mkdir(mode=0o700, exist_ok=True)
    return server


def start_sshd(
    root: Path, *, read_only: bool = False, port: int | None = None, host_key_kind: str = "ed25519"
) -> SshServer:
    """Prepare and start an sshd under ``root``; call ``stop()`` when done."""
    server = prepare_sshd(root, read_only=read_only, port=port, host_key_kind=host_key_kind)
    server.start()
    return server


@contextlib.contextmanager
def running_sshd(
    root: Path, *, read_only: bool = False, host_key_kind: str = "ed25519"
) -> Iterator[SshServer]:
    """``with running_sshd(tmp_path / "sshd") as server:``: started, and stopped at the end."""
    server = start_sshd(root, read_only=read_only, host_key_kind=host_key_kind)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    """A running sshd for one test (load with ``pytest_plugins = ["tests.sshd_fixture"]``)."""
    with running_sshd(tmp_path / "sshd") as server:
        yield server


class OpenWatch:
    """Names of files opened in some folders since the watch began (Linux inotify, via ctypes)."""

    IN_ACCESS = 0x001
    IN_OPEN = 0x020
    _EVENT = struct.Struct("iIII")

    def __init__(self, *folders: Path) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self._folders: dict[int, Path] = {}
        for folder in folders:
            wd = self._libc.inotify_add_watch(
                self._fd, os.fsencode(folder), self.IN_OPEN | self.IN_ACCESS
            )
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder}")
            self._folders[wd] = folder
        self.seen: list[Path] = []

    def opened(self) -> list[Path]:
        """Every path opened or read so far (in event order, repeats included)."""
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return self.seen
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, size = self._EVENT.unpack_from(data, offset)
                start = offset + self._EVENT.size
                name = data[start : start + size].rstrip(b"\0").decode()
                if mask & self.IN_OPEN and name:
                    self.seen.append(self._folders[wd] / name)
                offset = start + size

    def close(self) -> None:
        os.close(self._fd)
