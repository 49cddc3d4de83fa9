"""Send files one way over UDP: encode, interleave, pace with a token bucket, repeat.

Every file gets a random 8-byte transfer id, kept across carousel passes so a receiver merges
the blocks of every pass it hears. Nothing comes back: the sender cannot know what arrived.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from relay.codes import BAD_URL
from relay.diode.fec import DEFAULT_OVERHEAD, choose_geometry, interleaved_packets
from relay.diode.manifest import encode_object
from relay.errors import TransportError

DEFAULT_RATE = 20_000_000  # bytes per second on the wire
SEND_BUFFER = 4 << 20


@dataclass(frozen=True)
class SendOptions:
    """How to send: parity ratio, wire rate in bytes/s (0 = unpaced) and number of passes."""

    overhead: float = DEFAULT_OVERHEAD
    rate: int = DEFAULT_RATE
    repeat: int = 1


@dataclass(frozen=True)
class OutgoingFile:
    """One file to send: the name the receiver will see and its bytes."""

    name: str
    data: bytes


class TokenBucket:
    """Pace a byte stream at ``rate`` bytes/s with bursts of at most ``burst`` bytes."""

    def __init__(
        self,
        rate: int,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(rate // 100, 64 << 10)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._stamp = clock()

    def take(self, amount: int) -> None:
        """Block until ``amount`` bytes may be sent, then spend them."""
        if self.rate <= 0:
            return
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < amount:
            self._sleep((amount - self._tokens) / self.rate)
            now = self._clock()
            self._tokens += (now - self._stamp) * self.rate
            self._stamp = now
        self._tokens -= amount


def send_files(files: Sequence[OutgoingFile], host: str, port: int, options: SendOptions) -> int:
    """Send ``files`` to ``host:port``; return the number of datagrams sent."""
    if options.repeat < 1:
        raise ValueError("repeat must be at least 1")
    address = _resolve(host, port)
    prepared = [(secrets.token_bytes(8), encode_object(f.name, f.data)) for f in files]
    bucket = TokenBucket(options.rate)
    sent = 0
    with socket.socket(address[0], socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        for _ in range(options.repeat):
            for transfer, obj in prepared:
                geo = choose_geometry(len(obj), options.overhead)
                for datagram in interleaved_packets(obj, geo, transfer):
                    bucket.take(len(datagram))
                    _send(sock, datagram, address[1])
                    sent += 1
    return sent


def _resolve(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise TransportError(f"cannot resolve {host}: {exc.strerror}", code=BAD_URL) from None
    family, _, _, _, sockaddr = infos[0]
    return family, (str(sockaddr[0]), int(sockaddr[1]))


def _send(sock: socket.socket, datagram: bytes, address: tuple[str, int]) -> None:
    for _ in range(1000):
        try:
            sock.sendto(datagram, address)
        except OSError as exc:
            if exc.errno not in (errno.ENOBUFS, errno.EAGAIN):
                reason = os.strerror(exc.errno or 0)
                raise TransportError(f"cannot send to {address[0]}: {reason}") from None
            time.sleep(0.001)
        else:
            return
    raise TransportError(f"send buffer to {address[0]} stays full")
