"""A real rsyslogd for tests: loopback UDP and TCP listeners, a unix datagram socket, one file out.

Usage: import the ``rsyslog`` fixture in a ``conftest.py`` (``from rsyslog_fixture import
rsyslog``), or wrap :func:`running_rsyslog` in a fixture of the test module, then::

    def test_x(rsyslog: RsyslogServer) -> None:
        ...send to rsyslog.tcp_url / rsyslog.udp_url / rsyslog.unix_url...
        got = rsyslog.wait_for_count(3)          # raw messages, probe traffic left out
        rsyslog.stop(); rsyslog.start()          # receiver down, then back on the same ports

Or without pytest: ``with running_rsyslog() as server: ...``.

rsyslogd runs in the foreground (``-n``) as a child of the test, with its own config (``-f``),
pid file (``-i``) and work directory, so it never touches a system rsyslog. Every input is bound
to one ruleset that writes each message as a JSON line ``{"raw": RAWMSG, "input": INPUTNAME}``:
the raw message is kept byte for byte (control characters are not escaped on reception), and the
JSON encoding keeps one message per line even when it holds a newline.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROBE = "rsyslog-fixture-probe"
START_TIMEOUT = 30.0  # a backstop: the wait ends at the event (seconds on a loaded machine)

CONF = """\
global(workDirectory="{work}" parser.escapeControlCharactersOnReceive="off"
       maxMessageSize="256k")
module(load="imudp")
module(load="imtcp")
module(load="imuxsock" SysSock.Use="off")
template(name="rawjson" type="list") {{
  constant(value="{{\\"raw\\":\\"") property(name="rawmsg" format="json")
  constant(value="\\",\\"input\\":\\"") property(name="inputname")
  constant(value="\\"}}\\n")
}}
ruleset(name="capture") {{
  action(type="omfile" file="{output}" template="rawjson")
}}
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="capture")
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="capture")
input(type="imuxsock" socket="{unix}" ratelimit.interval="0" ruleset="capture")
"""


@dataclass(frozen=True)
class Received:
    """One message as rsyslog received it: the raw text and the input (imudp, imtcp, imuxsock)."""

    raw: str
    input: str


@dataclass
class RsyslogServer:
    """A running (or stopped) rsyslogd with fixed ports across restarts."""

    directory: Path
    udp_port: int
    tcp_port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def output(self) -> Path:
        return self.directory / "received.jsonl"

    @property
    def unix_socket(self) -> Path:
        return self.directory / "log.sock"

    @property
    def udp_url(self) -> str:
        return f"udp://127.0.0.1:{self.udp_port}"

    @property
    def tcp_url(self) -> str:
        return f"tcp://127.0.0.1:{self.tcp_port}"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.unix_socket}"

    def start(self) -> None:
        """Start rsyslogd and return once all three inputs have delivered a probe message."""
        if self.process is not None:
            raise RuntimeError("rsyslogd already running")
        conf = self.directory / "rsyslog.conf"
        (self.directory / "work").mkdir(exist_ok=True)
        conf.write_text(
            CONF.format(
                work=self.directory / "work",
                output=self.output,
                udp=self.udp_port,
                tcp=self.tcp_port,
                unix=self.unix_socket,
            )
        )
        argv = [_rsyslogd(), "-n", "-f", str(conf), "-i", str(self.directory / "rsyslogd.pid")]
        log = (self.directory / "rsyslogd.log").open("ab")
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._wait_ready()

    def stop(self) -> None:
        """Stop rsyslogd (SIGTERM, then SIGKILL); the listeners are gone when this returns."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def received(self) -> list[Received]:
        """Every message received so far, in arrival order, probe messages left out."""
        return [r for r in self._all() if PROBE not in r.raw]

    def messages(self) -> list[str]:
        """The raw text of :meth:`received`."""
        return [r.raw for r in self.received()]

    def wait_for(self, ready: Callable[[list[str]], bool], timeout: float = 30.0) -> list[str]:
        """:meth:`messages` once ``ready(messages)``, re-read at each write rsyslogd makes in its
        directory (inotify, no polling); ``AssertionError`` on timeout."""
        from tests.file_events import wait_for

        got: list[str] = []

        def arrived() -> bool:
            got[:] = self.messages()
            return ready(got)

        try:
            wait_for(arrived, timeout, watch=self.directory, recursive=False)
        except AssertionError:
            raise AssertionError(
                f"rsyslog did not receive what was expected; got {got!r}"
            ) from None
        return got

    def wait_for_count(self, count: int, timeout: float = 30.0) -> list[str]:
        """Wait until at least ``count`` messages arrived; returns them all."""
        return self.wait_for(lambda got: len(got) >= count, timeout)

    def _all(self) -> list[Received]:
        if not self.output.exists():
            return []
        lines = self.output.read_text(encoding="utf-8").splitlines()
        return [Received(**json.loads(line)) for line in lines if line.endswith("}")]

    def _wait_ready(self) -> None:
        marker = f"{PROBE}-{uuid.uuid4().hex}"
        deadline = time.monotonic() + START_TIMEOUT
        pending = {"imtcp", "imudp", "imuxsock"}
        while pending:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"rsyslogd exited; see {self.directory / 'rsyslogd.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"rsyslogd inputs not ready: {sorted(pending)}")
            for name in pending:
                with suppress(OSError):
                    self._probe(name, marker)
            time.sleep(0.05)
            seen = {r.input for r in self._all() if marker in r.raw}
            pending -= seen

    def _probe(self, input_name: str, marker: str) -> None:
        message = f"<14>1 - - fixture - - - {marker}".encode()
        if input_name == "imtcp":
            with socket.create_connection(("127.0.0.1", self.tcp_port), timeout=1) as sock:
                sock.sendall(b"%d %b" % (len(message), message))
        elif input_name == "imudp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(message, ("127.0.0.1", self.udp_port))
        else:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message, str(self.unix_socket))


def _rsyslogd() -> str:
    found = shutil.which("rsyslogd") or (
        "/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None
    )
    if found is None:
        raise RuntimeError("rsyslogd not found: apt-get install -y rsyslog (.ci/run does it)")
    return found


def free_port(kind: socket.SocketKind) -> int:
    """A loopback port free right now for ``kind`` (SOCK_STREAM or SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_rsyslog() -> Iterator[RsyslogServer]:
    """A started rsyslogd in a short private temp dir (unix socket paths: 108 bytes at most)."""
    directory = Path(tempfile.mkdtemp(prefix="rsys"))
    server = RsyslogServer(directory, free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def rsyslog() -> Iterator[RsyslogServer]:
    """A fresh rsyslogd per test."""
    with running_rsyslog() as server:
        yield server
