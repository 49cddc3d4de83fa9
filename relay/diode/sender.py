"""Send files one way over UDP: encode, interleave, pace with a token bucket, repeat.

Every file gets a random 8-byte transfer id, kept across carousel passes so a receiver merges
the blocks of every pass it hears. Nothing comes back: the sender cannot know what arrived.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from relay.codes import BAD_URL
from relay.diode.fec import (
    DEFAULT_OVERHEAD,
    Geometry,
    choose_geometry,
    encode_parity_rounds,
    stripe_blocks,
)
from relay.diode.manifest import encode_object
from relay.diode.packet import HEADER_SIZE, PacketWriter
from relay.errors import TransportError

DEFAULT_RATE = 20_000_000  # bytes per second on the wire
SEND_BUFFER = 4 << 20
# Linux UDP segmentation offload (not exported by the socket module): one send of N equal
# datagrams laid end to end leaves as N datagrams. At most 64 segments and one UDP payload.
SOL_UDP = 17
UDP_SEGMENT = 103
GSO_AVAILABLE = sys.platform.startswith("linux")
GSO_MAX_SEGMENTS = 32
ENCODERS = 2  # helper threads encoding parity rounds (zfec releases the GIL)
ENCODER_NICENESS = 5  # added to the encoder threads' nice value
ROUNDS_PER_TASK = 4  # parity rounds encoded per zfec call and helper task
PARITY_KEPT = 256 << 20  # parity bytes kept across carousel passes (else encoded each pass)
MAX_UDP_PAYLOAD = 65507
_GSO_REFUSED = (errno.EIO, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOPROTOOPT, errno.EMSGSIZE)


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

    def encoded(self) -> bytes | memoryview:
        """The object a transfer carries (:func:`relay.diode.manifest.encode_object`)."""
        return encode_object(self.name, self.data)


@dataclass(frozen=True)
class EncodedFile:
    """One file to send, already in the form a transfer carries (from
    :func:`relay.diode.manifest.read_object`: read from disk without a second copy)."""

    obj: memoryview

    def encoded(self) -> bytes | memoryview:
        """The object a transfer carries."""
        return self.obj


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


def send_files(
    files: Sequence[OutgoingFile | EncodedFile], host: str, port: int, options: SendOptions
) -> int:
    """Send ``files`` to ``host:port``; return the number of datagrams sent."""
    if options.repeat < 1:
        raise ValueError("repeat must be at least 1")
    address = _resolve(host, port)
    prepared = [(secrets.token_bytes(8), f.encoded()) for f in files]
    geometries = [choose_geometry(len(obj), options.overhead) for _, obj in prepared]
    parity_bytes = sum((g.m - g.k) * g.stripes * g.block_size for g in geometries)
    keep = options.repeat > 1 and parity_bytes <= PARITY_KEPT
    bucket = TokenBucket(options.rate)
    sent = 0
    with (
        socket.socket(address[0], socket.SOCK_DGRAM) as sock,
        ThreadPoolExecutor(ENCODERS, "diode-fec", _yield_to_the_sender) as pool,
    ):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        link = _Link(sock, address[1], bucket)
        kept: dict[int, _Parity] = {}
        try:
            for _ in range(options.repeat):
                for number, ((transfer, obj), geo) in enumerate(
                    zip(prepared, geometries, strict=True)
                ):
                    parity = kept.get(number) or _Parity(pool, obj, geo)
                    if keep:
                        kept[number] = parity
                    sent += _send_object(link, parity, transfer)
        finally:
            for parity in kept.values():
                parity.cancel()
    return sent


def _yield_to_the_sender() -> None:
    """Run an encoder thread at a lower priority (Linux: nice applies per thread) so that, when
    cores are short, the thread sending datagrams (and a receiver on the same host) go first;
    the encoders take what is left, and the data rounds need no parity."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ENCODER_NICENESS)


class _Parity:
    """The data blocks of one object and its parity, encoded a few rounds at a time
    (``ROUNDS_PER_TASK``) in helper threads (zfec releases the GIL) from the moment this is
    made; kept across carousel passes when there is room (``PARITY_KEPT``), so a file is encoded
    once."""

    def __init__(self, pool: ThreadPoolExecutor, obj: bytes | memoryview, geo: Geometry) -> None:
        self.geo = geo
        self.data = [tuple(blocks) for blocks in stripe_blocks(obj, geo)]
        self.tasks = [
            pool.submit(encode_parity_rounds, geo, self.data, first, ROUNDS_PER_TASK)
            for first in range(geo.k, geo.m, ROUNDS_PER_TASK)
        ]

    def round(self, index: int) -> list[bytes] | list[memoryview]:
        """Block ``index`` of every stripe, in stripe order."""
        if index < self.geo.k:
            return [blocks[index] for blocks in self.data]
        task, at = divmod(index - self.geo.k, ROUNDS_PER_TASK)
        return [blocks[at] for blocks in self.tasks[task].result()]

    def cancel(self) -> None:
        for future in self.tasks:
            future.cancel()


def _send_object(link: _Link, parity: _Parity, transfer: bytes) -> int:
    """One pass over one object in round order (:func:`relay.diode.fec.interleaved_packets`),
    in batches of distinct stripes."""
    geo = parity.geo
    writer = PacketWriter(transfer, geo.k, geo.m, geo.block_size, geo.total_len)
    link.start(geo.block_size + HEADER_SIZE, batch_limit(geo.stripes))
    try:
        for index in range(geo.m):
            blocks = parity.round(index)
            link.add_round(writer.round_headers(index, blocks), blocks)
        link.flush()
    except BaseException:
        parity.cancel()
        raise
    return geo.wire_blocks


def batch_limit(stripes: int) -> int:
    """Datagrams per send call: never two blocks of one stripe in a batch (a batch may be lost
    as one on some paths, e.g. loopback firewall rules see it as one packet), so a batch costs
    a stripe at most one block; and no batching for small transfers of a few stripes."""
    limit = min(GSO_MAX_SEGMENTS, stripes // 4)
    return limit if limit >= 2 else 1


class _Link:
    """Datagrams out of one socket: paced, and several per system call where the kernel offers
    UDP segmentation offload (``UDP_SEGMENT``, Linux 4.18+); one ``sendmsg`` each otherwise.

    Header and payload go out as two buffers (no joined copy). Every datagram of a batch has the
    same length, so the kernel cuts the batch back into exactly the datagrams it was built from.
    """

    def __init__(self, sock: socket.socket, address: tuple[str, int], bucket: TokenBucket) -> None:
        self.sock = sock
        self.address = address
        self.bucket = bucket
        self._parts: list[bytes | memoryview] = []
        self._count = 0
        self._size = 0
        self._batch = 1
        self._segment = 0  # the UDP_SEGMENT size set on the socket; 0 = none
        self._gso_usable = GSO_AVAILABLE

    def start(self, datagram_size: int, batch: int) -> None:
        """Datagrams from now on are ``datagram_size`` bytes; batch up to ``batch`` of them."""
        self.flush()
        self._size = datagram_size
        batch = min(batch, MAX_UDP_PAYLOAD // datagram_size)
        self._batch = batch if batch >= 2 and self._gso_usable else 1
        segment = datagram_size if self._batch > 1 else 0
        if segment != self._segment:
            try:
                self.sock.setsockopt(SOL_UDP, UDP_SEGMENT, segment)
                self._segment = segment
            except OSError:
                self._gso_usable = False
                self._batch = 1

    def add(self, header: bytes, payload: bytes | memoryview) -> None:
        self._parts += (header, payload)
        self._count += 1
        if self._count >= self._batch:
            self.flush()

    def add_round(self, headers: Sequence[bytes], payloads: Sequence[bytes | memoryview]) -> None:
        """:meth:`add` for each header and payload in turn (the same batches), with less work."""
        at, total = 0, len(headers)
        while at < total:
            take = min(self._batch - self._count, total - at)
            parts: list[bytes | memoryview] = [b""] * (2 * take)
            parts[::2] = headers[at : at + take]
            parts[1::2] = payloads[at : at + take]
            self._parts += parts
            self._count += take
            at += take
            if self._count >= self._batch:
                self.flush()

    def flush(self) -> None:
        if not self._count:
            return
        parts, count = self._parts, self._count
        self._parts, self._count = [], 0
        self.bucket.take(count * self._size)
        if count == 1 or self._send(parts) is False:
            for at in range(0, len(parts), 2):
                self._send(parts[at : at + 2])

    def _send(self, parts: list[bytes | memoryview]) -> bool:
        """Send ``parts`` as one call; ``False`` if segmentation offload failed (then it is off
        for the rest of the run and the caller sends the datagrams one by one)."""
        for _ in range(1000):
            try:
                self.sock.sendmsg(parts, (), 0, self.address)
            except OSError as exc:
                if exc.errno in (errno.ENOBUFS, errno.EAGAIN):
                    time.sleep(0.001)
                    continue
                if len(parts) > 2 and exc.errno in _GSO_REFUSED:
                    self._gso_usable = False
                    self._batch = 1
                    return False
                reason = os.strerror(exc.errno or 0)
                raise TransportError(f"cannot send to {self.address[0]}: {reason}") from None
            else:
                return True
        raise TransportError(f"send buffer to {self.address[0]} stays full")


def _resolve(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise TransportError(f"cannot resolve {host}: {exc.strerror}", code=BAD_URL) from None
    family, _, _, _, sockaddr = infos[0]
    return family, (str(sockaddr[0]), int(sockaddr[1]))
