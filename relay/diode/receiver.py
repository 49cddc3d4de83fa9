"""Listen on a UDP port and write every file that arrives whole and verified into a folder.

Files are written with :func:`relay.transport.folder.write_atomic` (mode 0600, folder 0700) under
the sender's sanitised base name, so nothing partial is ever visible: an incomplete transfer lives
only in memory and disappears when it expires or the process stops.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from relay.diode.assembly import Assembler, Event, ReceiverLimits
from relay.errors import RelayError, TransportError
from relay.transport.folder import ensure_private_dir, write_atomic

RECEIVE_BUFFER = 32 << 20
MAX_DATAGRAM = 65535
POLL_SECONDS = 0.2
# Helper threads decoding the stripes that lost blocks (zfec releases the GIL): at a few percent
# loss most stripes complete within the last few parity rounds, and decoding them one after the
# other in the receiving thread would add that work to the end of every transfer.
DECODERS = 2
# Linux's SO_RCVBUFFORCE (not exported by the socket module): lets root exceed rmem_max.
_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33 if sys.platform.startswith("linux") else None)
# Linux UDP receive offload (4.18+, not exported by the socket module): datagrams of one sender
# arrive several per read, laid end to end, with their common size in a control message.
_SOL_UDP = 17
_UDP_GRO = 104
_GRO_SPACE = socket.CMSG_SPACE(4)

Report = Callable[[str], None]


def open_socket(host: str, port: int) -> socket.socket:
    """A UDP socket bound to ``host:port`` with a large receive buffer."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError as exc:
        raise TransportError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    _grow_receive_buffer(sock)
    _enable_gro(sock)
    try:
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        raise TransportError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def _grow_receive_buffer(sock: socket.socket) -> None:
    if _RCVBUFFORCE is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, _RCVBUFFORCE, RECEIVE_BUFFER)
            return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)


def _enable_gro(sock: socket.socket) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            sock.setsockopt(_SOL_UDP, _UDP_GRO, 1)


def datagrams(data: bytes, ancillary: list[tuple[int, int, bytes]]) -> list[bytes]:
    """Split what one read returned into datagrams: one, or several of the size the kernel
    reports with ``UDP_GRO`` (the last one may be shorter)."""
    for level, kind, value in ancillary:
        if level == _SOL_UDP and kind == _UDP_GRO and len(value) >= 4:
            (size,) = struct.unpack("=i", value[:4])
            if 0 < size < len(data):
                return [data[at : at + size] for at in range(0, len(data), size)]
    return [data]


def receive_forever(
    sock: socket.socket,
    out_dir: Path,
    stop: threading.Event,
    report: Report,
    limits: ReceiverLimits | None = None,
) -> Assembler:
    """Receive until ``stop`` is set; write completed files into ``out_dir``."""
    ensure_private_dir(out_dir)
    with ThreadPoolExecutor(DECODERS, "diode-decode") as pool:
        assembler = Assembler(limits, decode_pool=pool)
        next_sweep = time.monotonic() + POLL_SECONDS
        while not stop.is_set():
            ready, _, _ = select.select([sock], [], [], POLL_SECONDS)
            if ready:
                _drain(sock, assembler, out_dir, report)
            now = time.monotonic()
            if now >= next_sweep:
                for event in assembler.expire(now):
                    report(_describe(event))
                next_sweep = now + POLL_SECONDS
    return assembler


def _drain(sock: socket.socket, assembler: Assembler, out_dir: Path, report: Report) -> None:
    """Read every datagram already queued, without blocking."""
    for _ in range(4096):
        try:
            data, ancillary, _, _ = sock.recvmsg(MAX_DATAGRAM, _GRO_SPACE, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        now = time.monotonic()
        for datagram in datagrams(data, ancillary) if ancillary else (data,):
            event = assembler.accept(datagram, now)
            if event is not None:
                _handle(event, out_dir, report)


def _handle(event: Event, out_dir: Path, report: Report) -> None:
    if event.file is not None:
        try:
            path = write_atomic(out_dir, event.file.name, event.file.data)
        except OSError as exc:
            report(f"cannot write {event.file.name}: {exc.strerror}")
            return
        except RelayError as exc:
            report(f"cannot write {event.file.name}: {exc.diagnostics()}")
            return
        report(f"received {path.name} ({event.detail}, transfer {event.transfer})")
        return
    report(_describe(event))


def _describe(event: Event) -> str:
    return f"{event.kind} transfer {event.transfer}: {event.detail}"
