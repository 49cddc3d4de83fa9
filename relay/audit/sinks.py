"""SIEM sinks: where audit records go after the store, and the cursor that makes it at-least-once.

This is the I/O edge; formatting is in :mod:`relay.audit.formats`. A sink has one method,
``send(items)``, that either delivered every item or raises :class:`~relay.errors.TransportError`.
:func:`deliver` reads what a sink has not yet confirmed (after its cursor), sends it in batches and
moves the cursor only after a batch went through. The store persists the cursors; on the next call
(the next ``relay agent get``, the next import) the sink catches up. Nothing is lost; a batch cut
by a failure may arrive twice.

Positions are the store's own order of arrival (on the agent: ``seq``; on the gateway: the row id
of the merged record), never ``seq`` alone on the gateway: records that fill a gap late still get
forwarded.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from relay.audit.formats import format_cef_syslog, format_json_line, format_rfc5424
from relay.audit.record import AuditRecord
from relay.errors import TransportError

SYSLOG_FORMATS = ("rfc5424", "cef")
DEFAULT_TIMEOUT = 5.0
DEFAULT_BATCH = 500


@dataclass(frozen=True)
class QueuedRecord:
    """A record waiting for a sink: its store position, the agent it belongs to, the record."""

    position: int
    agent: str
    record: AuditRecord


class AuditSink(Protocol):
    """A destination for audit records."""

    @property
    def name(self) -> str:
        """Stable key for this sink's cursor (``jsonl:/path``, ``syslog:tcp://host:port``)."""
        ...

    def send(self, items: Sequence[QueuedRecord]) -> None:
        """Deliver every item, in order, or raise ``TransportError``."""
        ...


class JsonlSink:
    """Append one JSON object per line to a file (created 0600), then fsync."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def name(self) -> str:
        return f"jsonl:{self.path}"

    def send(self, items: Sequence[QueuedRecord]) -> None:
        data = "".join(format_json_line(i.agent, i.record) + "\n" for i in items).encode("utf-8")
        if not data:
            return
        try:
            self._append(data)
        except OSError as exc:
            raise TransportError(f"cannot append to {self.path}: {exc.strerror}") from None

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        created = not self.path.exists()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(self.path, flags, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class SyslogAddress:
    """A parsed ``udp://host:port``, ``tcp://host:port`` or ``unix:///path``."""

    scheme: Literal["udp", "tcp", "unix"]
    host: str = ""
    port: int = 0
    path: str = ""


def parse_syslog_url(url: str) -> SyslogAddress:
    """Parse a syslog destination; ``ValueError`` with a human message if it is not one."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"{url!r} is not udp://host:port, tcp://host:port or unix:///path")
    if scheme == "unix":
        if not rest.startswith("/"):
            raise ValueError(f"{url!r}: a unix socket path must be absolute (unix:///dev/log)")
        return SyslogAddress("unix", path=rest)
    if scheme not in ("udp", "tcp"):
        raise ValueError(f"{url!r}: scheme must be udp, tcp or unix")
    host, port = _host_port(url, rest)
    return SyslogAddress("udp" if scheme == "udp" else "tcp", host=host, port=port)


def _host_port(url: str, rest: str) -> tuple[str, int]:
    host, colon, port_text = rest.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or "/" in rest or not port_text.isdigit():
        raise ValueError(f"{url!r}: expected host:port")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"{url!r}: port must be 1..65535")
    return host, port


class SyslogSink:
    """Send records as RFC 5424 (or CEF inside RFC 5424) over UDP, TCP or a unix datagram socket.

    TCP uses RFC 6587 octet counting (``LEN SP MSG``), one connection per batch, and counts the
    batch as delivered only when the receiver has read it all: after sending, the sink half-closes
    and waits for the receiver to close in turn. UDP is fire-and-forget: a receiver that is down
    is usually not noticed (use TCP where completeness matters).
    """

    def __init__(
        self,
        url: str,
        fmt: str = "rfc5424",
        *,
        hostname: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if fmt not in SYSLOG_FORMATS:
            raise ValueError(f"syslog format must be one of {', '.join(SYSLOG_FORMATS)}")
        self.url = url
        self.address = parse_syslog_url(url)
        self.fmt = fmt
        self.hostname = hostname if hostname is not None else socket.gethostname()
        self.timeout = timeout

    @property
    def name(self) -> str:
        return f"syslog:{self.url}"

    def format(self, item: QueuedRecord) -> bytes:
        """The syslog message for one item, as sent (without framing)."""
        formatter = format_cef_syslog if self.fmt == "cef" else format_rfc5424
        text = formatter(item.agent, item.record, hostname=self.hostname, procid=str(os.getpid()))
        return text.encode("utf-8")

    def send(self, items: Sequence[QueuedRecord]) -> None:
        if not items:
            return
        messages = [self.format(item) for item in items]
        try:
            if self.address.scheme == "tcp":
                self._send_tcp(messages)
            else:
                self._send_datagrams(messages)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise TransportError(f"syslog {self.url}: {reason}") from None

    def _send_tcp(self, messages: list[bytes]) -> None:
        frames = b"".join(b"%d %b" % (len(m), m) for m in messages)
        address = (self.address.host, self.address.port)
        with socket.create_connection(address, timeout=self.timeout) as sock:
            sock.sendall(frames)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(4096):
                pass  # a syslog receiver sends nothing; EOF means it has read all we sent

    def _send_datagrams(self, messages: list[bytes]) -> None:
        if self.address.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            target: str | tuple[str, int] = self.address.path
        else:
            family = socket.AF_INET6 if ":" in self.address.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            target = (self.address.host, self.address.port)
        with sock:
            sock.settimeout(self.timeout)
            sock.connect(target)
            for message in messages:
                sock.send(message)


@dataclass(frozen=True)
class SinkCursor:
    """Where a sink stands: ``load()`` the last delivered position, ``save(position)`` a new one.

    The store implements both (one row per sink name); :func:`deliver` calls ``save`` only after a
    batch is confirmed.
    """

    load: Callable[[], int]
    save: Callable[[int], None]


LoadAfter = Callable[[int, int], Sequence[QueuedRecord]]
"""``load_after(position, limit)``: up to ``limit`` records past ``position``, ascending."""


@dataclass(frozen=True)
class Delivery:
    """Outcome of :func:`deliver` for one sink: how many went, where the cursor is, any error."""

    sink: str
    delivered: int
    position: int
    error: TransportError | None = None


def deliver(
    sink: AuditSink, cursor: SinkCursor, load_after: LoadAfter, batch_size: int = DEFAULT_BATCH
) -> Delivery:
    """Send everything after the sink's cursor, batch by batch, advancing the cursor after each.

    Never raises ``TransportError``: a failure stops here and is returned in ``Delivery.error``;
    the next call resumes from the last confirmed batch (at-least-once).
    """
    position = cursor.load()
    delivered = 0
    while True:
        batch = load_after(position, batch_size)
        if not batch:
            return Delivery(sink.name, delivered, position)
        _check_batch(batch, position, batch_size)
        try:
            sink.send(batch)
        except TransportError as exc:
            return Delivery(sink.name, delivered, position, exc)
        position = batch[-1].position
        cursor.save(position)
        delivered += len(batch)


def _check_batch(batch: Sequence[QueuedRecord], position: int, limit: int) -> None:
    positions = [item.position for item in batch]
    if len(batch) > limit or positions[0] <= position or positions != sorted(set(positions)):
        raise ValueError(
            "load_after must return at most `limit` items, ascending, after `position`"
        )


def report_failures(deliveries: Sequence[Delivery]) -> None:
    """One warning line on stderr per sink that is behind; the records wait in the store."""
    import sys

    for item in deliveries:
        if item.error is not None:
            sys.stderr.write(
                f"relay: warning: audit sink {item.sink} is behind: {item.error.message} "
                "(records are kept and will be sent later)\n"
            )


def deliver_all(
    sinks: Sequence[AuditSink], cursor_for: Callable[[str], SinkCursor], load_after: LoadAfter
) -> list[Delivery]:
    """:func:`deliver` to each sink; one sink down does not hold back the others."""
    return [deliver(sink, cursor_for(sink.name), load_after) for sink in sinks]


def sinks_from_settings(jsonl: str, syslog: str, syslog_format: str = "rfc5424") -> list[AuditSink]:
    """The sinks named by the ``audit.jsonl``, ``audit.syslog`` and ``audit.syslog_format`` keys."""
    sinks: list[AuditSink] = []
    if jsonl:
        sinks.append(JsonlSink(Path(jsonl)))
    if syslog:
        sinks.append(SyslogSink(syslog, syslog_format))
    return sinks


def memory_source(items: Sequence[QueuedRecord]) -> LoadAfter:
    """A ``load_after`` over an in-memory list (tests, one-off exports)."""
    ordered = sorted(items, key=lambda item: item.position)

    def load_after(position: int, limit: int) -> Sequence[QueuedRecord]:
        return [item for item in ordered if item.position > position][:limit]

    return load_after
