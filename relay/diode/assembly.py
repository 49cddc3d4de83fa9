"""The receiver's state machine: datagrams and a clock in, verified files and events out.

:class:`Assembler` keeps one :class:`_Transfer` per transfer id, stores at most ``k`` blocks per
stripe, decodes a stripe as soon as it has ``k``, and hands back a file when every stripe is
decoded and the SHA-256 in the manifest matches. Memory is bounded: a transfer is admitted only
if its decoded size fits both the per-file cap and the bytes still free under the global cap,
and while fewer than ``max_transfers`` are open. A transfer that hears nothing for
``expire_after`` seconds is dropped. Finished transfer ids are remembered for the same time so a
carousel repeat is not written again.

No I/O: the caller passes ``now`` and writes the files. The caller may pass an executor: then
stripes that lost blocks are decoded there (zfec releases the GIL) while datagrams of other
stripes are placed, and a transfer's file is handed back once all its stripes are decoded.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import mmap
import struct
import zlib
from collections import OrderedDict
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field

from relay.diode.fec import Geometry, decoder
from relay.diode.manifest import MAX_NAME_BYTES, ObjectRejected, ReceivedFile, decode_object
from relay.diode.packet import HEADER_SIZE, BlockPacket, PacketRejected, decode_packet

MANIFEST_MAX = 2 + 8 + 32 + MAX_NAME_BYTES
MAX_REMEMBERED = 4096
# Python's cost of holding one block besides its payload (bytes object, dict slot), charged so
# that tiny blocks cannot multiply the memory a transfer really takes.
BLOCK_OVERHEAD = 160
# Header bytes 0..27 (magic to total_len) are the same in every datagram of a transfer; 28..37
# are stripe, index and CRC (docs/diode.md, packet format).
_PREFIX = 28
_VARYING = struct.Struct(">IHI")


@dataclass(frozen=True)
class ReceiverLimits:
    """Caps enforced where datagrams enter."""

    max_transfers: int = 16
    max_bytes: int = 1 << 30  # bytes held across all open transfers (see BLOCK_OVERHEAD)
    max_file_bytes: int = 512 << 20
    expire_after: float = 60.0


@dataclass(frozen=True)
class Event:
    """Something the operator should hear about: ``completed``, ``rejected``, ``expired`` or
    ``refused`` (a transfer over a cap; reported once, its datagrams are dropped)."""

    kind: str
    transfer: str
    detail: str
    file: ReceivedFile | None = None


@dataclass
class Counters:
    """Datagrams that did not contribute, by reason."""

    malformed: int = 0
    refused: int = 0
    duplicate: int = 0
    accepted: int = 0


class _Stripe:
    """A stripe still short of ``k`` blocks: which block numbers it holds (a bit mask), how
    many, and which slots hold parity blocks (slot -> block number)."""

    __slots__ = ("count", "free", "held", "parity")

    def __init__(self, k: int) -> None:
        self.held = 0
        self.count = 0
        self.free = k - 1  # every slot above this one is taken
        self.parity: dict[int, int] | None = None


@dataclass
class _Transfer:
    tid: bytes
    geo: Geometry
    last_seen: float
    prefix: bytes = b""  # header bytes 0..27 of the datagram that opened it
    pending: dict[int, _Stripe] = field(default_factory=dict)
    decoded: int = 0
    pool: Executor | None = None  # decodes stripes here (zfec releases the GIL) if given
    decoding: list[Future[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        geo = self.geo
        self.stripes = geo.stripes
        self.length = HEADER_SIZE + geo.block_size
        self.k, self.size = geo.k, geo.block_size
        self.stripe_bytes = geo.k * geo.block_size
        self.done = bytearray(self.stripes)
        self.memory = _new_map(self.stripes * self.stripe_bytes)
        self.view = memoryview(self.memory)

    @property
    def reserved(self) -> int:
        return _reservation(self.geo)

    def store(self, stripe: int, index: int, payload: bytes | memoryview) -> bool | None:
        """Place one block; ``None`` if it was already held (or its stripe done), else whether
        the stripe is now complete (then it is decoded in place)."""
        if self.done[stripe]:
            return None
        k = self.k
        state = self.pending.get(stripe)
        if state is None:
            state = self.pending[stripe] = _Stripe(k)
        held, bit = state.held, 1 << index
        if held & bit:
            return None
        size = self.size
        if index < k and (state.parity is None or index not in state.parity):
            at = stripe * self.stripe_bytes + index * size  # the common case: its own slot
        else:
            at = stripe * self.stripe_bytes + self._slot(state, stripe, index) * size
        self.view[at : at + size] = payload
        state.held = held | bit
        state.count += 1
        if state.count < k:
            return False
        del self.pending[stripe]
        base = stripe * self.stripe_bytes
        if state.parity and self.pool is not None:
            self.decoding.append(self.pool.submit(self._decode, base, state.parity))
        elif state.parity:
            self._decode(base, state.parity)
        self.done[stripe] = 1
        self.decoded += 1
        return True

    def _slot(self, state: _Stripe, stripe: int, index: int) -> int:
        """The slot for a parity block (a free one), or for data block ``index`` whose own slot
        a parity block took (that one moves to a free slot first)."""
        if state.parity is None:
            state.parity = {}
        if index >= self.k:
            slot = _free_slot(state)
            state.parity[slot] = index
            return slot
        size, base = self.size, stripe * self.stripe_bytes
        other = _free_slot(state)
        self.view[base + other * size : base + (other + 1) * size] = self.view[
            base + index * size : base + (index + 1) * size
        ]
        state.parity[other] = state.parity.pop(index)
        return index

    def _decode(self, base: int, parity: dict[int, int]) -> None:
        """Rebuild the data blocks whose slots hold parity, and write them into those slots."""
        k, size = self.geo.k, self.geo.block_size
        blocks = [self.view[base + i * size : base + (i + 1) * size] for i in range(k)]
        numbers = list(range(k))
        for slot, index in parity.items():
            numbers[slot] = index
        rebuilt = decoder(k, self.geo.m).decode(blocks, numbers)
        for slot in parity:
            self.view[base + slot * size : base + (slot + 1) * size] = rebuilt[slot]

    def settle(self) -> None:
        """Wait for the stripes being decoded in the pool (a failure there is raised here)."""
        for future in self.decoding:
            future.result()
        self.decoding.clear()

    def release(self) -> None:
        """Give the map back (views handed out keep it alive until they go)."""
        concurrent.futures.wait(self.decoding)
        self.decoding.clear()
        self.pending.clear()
        self.view.release()
        with contextlib.suppress(BufferError):  # a finished file's view still uses it
            self.memory.close()


def _free_slot(state: _Stripe) -> int:
    """A slot that holds no block (one exists while the stripe holds fewer than ``k``)."""
    slot = state.free
    parity = state.parity
    while (state.held >> slot) & 1 or (parity is not None and slot in parity):
        slot -= 1
    state.free = slot - 1
    return slot


class Assembler:
    """Reassemble transfers from datagrams; see the module docstring."""

    def __init__(
        self, limits: ReceiverLimits | None = None, decode_pool: Executor | None = None
    ) -> None:
        self.limits = limits or ReceiverLimits()
        self.decode_pool = decode_pool
        self.counters = Counters()
        self._open: dict[bytes, _Transfer] = {}
        self._by_prefix: dict[bytes, _Transfer] = {}  # header bytes 0..27 -> open transfer
        self._finished: OrderedDict[bytes, float] = OrderedDict()
        # header bytes 0..27 of a finished transfer -> its id, and back (as long as remembered)
        self._finished_prefix: dict[bytes, bytes] = {}
        self._prefix_of: dict[bytes, bytes] = {}
        self._refused: OrderedDict[bytes, float] = OrderedDict()

    @property
    def bytes_reserved(self) -> int:
        """Decoded bytes the open transfers may grow to (always within ``max_bytes``)."""
        return sum(t.reserved for t in self._open.values())

    @property
    def open_transfers(self) -> int:
        """Transfers in progress."""
        return len(self._open)

    def accept(self, datagram: bytes, now: float) -> Event | None:
        """Take one datagram; return an event when a transfer finishes or is rejected.

        A datagram whose first 28 header bytes equal those of an open transfer's first accepted
        datagram already passed the magic, version, kind and geometry checks: only its length,
        CRC, stripe and index are checked again (the same checks, in the same order, as
        :func:`decode_packet`). One whose first 28 bytes equal those of a finished transfer
        still remembered is a duplicate without further checks (the carousel's repeats and the
        parity rounds after a transfer completed). Anything else takes the full path.
        """
        prefix = datagram[:_PREFIX]
        known = self._by_prefix.get(prefix)
        if known is not None:
            return self._accept_known(known, datagram, now)
        tid = self._finished_prefix.get(prefix)
        packet = None
        if tid is None:
            try:
                packet = decode_packet(datagram)
            except PacketRejected:
                self.counters.malformed += 1
                return None
            tid = packet.transfer
        if tid in self._finished or packet is None:
            self._finished[tid] = now
            self._finished.move_to_end(tid)
            self.counters.duplicate += 1
            return None
        state = self._open.get(packet.transfer) or self._admit(packet, now)
        if isinstance(state, str):
            return self._refuse(packet.transfer, state, now)
        if _geometry(packet) != state.geo:
            self.counters.malformed += 1
            return None
        state.last_seen = now
        if not state.prefix:
            state.prefix = bytes(datagram[:_PREFIX])
            self._by_prefix[state.prefix] = state
        return self._store(state, packet.stripe, packet.index, packet.payload, now)

    def _accept_known(self, state: _Transfer, datagram: bytes, now: float) -> Event | None:
        """The short path for a datagram whose header start matches an open transfer."""
        if len(datagram) != state.length:
            self.counters.malformed += 1
            return None
        stripe, index, crc = _VARYING.unpack_from(datagram, _PREFIX)
        view = memoryview(datagram)
        if (
            zlib.crc32(view[HEADER_SIZE:], zlib.crc32(view[: HEADER_SIZE - 4])) != crc
            or stripe >= state.stripes
            or index >= state.geo.m
        ):
            self.counters.malformed += 1
            return None
        state.last_seen = now
        return self._store(state, stripe, index, view[HEADER_SIZE:], now)

    def expire(self, now: float) -> list[Event]:
        """Drop transfers idle for ``expire_after`` seconds; forget old finished ids."""
        limit = self.limits.expire_after
        events = []
        for tid, state in list(self._open.items()):
            if now - state.last_seen >= limit:
                self._close(state)
                detail = f"incomplete: {state.decoded} of {state.geo.stripes} stripes decoded"
                events.append(Event("expired", tid.hex(), detail))
        for remembered in (self._finished, self._refused):
            while remembered and now - next(iter(remembered.values())) >= limit:
                self._forget(remembered.popitem(last=False)[0])
        return events

    def _admit(self, packet: BlockPacket, now: float) -> _Transfer | str:
        """A new transfer's state, or why it cannot be taken now."""
        if packet.total_len > self.limits.max_file_bytes + MANIFEST_MAX:
            return f"{packet.total_len} bytes is over the cap of {self.limits.max_file_bytes}"
        if len(self._open) >= self.limits.max_transfers:
            return f"{len(self._open)} transfers already open"
        geo = _geometry(packet)
        reserved = _reservation(geo)
        if self.bytes_reserved + reserved > self.limits.max_bytes:
            return f"{reserved} bytes do not fit in memory left for transfers"
        try:  # nothing is allocated before the checks above
            state = _Transfer(packet.transfer, geo, now, pool=self.decode_pool)
        except (OSError, MemoryError):
            return f"cannot map {reserved} bytes"
        self._open[packet.transfer] = state
        return state

    def _refuse(self, tid: bytes, reason: str, now: float) -> Event | None:
        """Count a refused datagram; report a transfer once per expiry window."""
        self.counters.refused += 1
        first = tid not in self._refused
        self._refused[tid] = now
        self._refused.move_to_end(tid)
        while len(self._refused) > MAX_REMEMBERED:
            self._refused.popitem(last=False)
        return Event("refused", tid.hex(), reason) if first else None

    def _store(
        self, state: _Transfer, stripe: int, index: int, payload: bytes | memoryview, now: float
    ) -> Event | None:
        complete = state.store(stripe, index, payload)
        if complete is None:
            self.counters.duplicate += 1
            return None
        self.counters.accepted += 1
        if not complete or state.decoded < state.stripes:
            return None
        return self._finish(state.tid, state, now)

    def _close(self, state: _Transfer) -> None:
        del self._open[state.tid]
        if self._by_prefix.get(state.prefix) is state:
            del self._by_prefix[state.prefix]
        state.release()

    def _finish(self, tid: bytes, state: _Transfer, now: float) -> Event:
        state.settle()
        obj = state.view[: state.geo.total_len]
        self._close(state)
        try:
            received = decode_object(obj)
        except ObjectRejected as exc:
            return Event("rejected", tid.hex(), exc.diagnostics())
        self._remember(tid, now, state.prefix)
        return Event("completed", tid.hex(), f"{len(received.data)} bytes", received)

    def _remember(self, tid: bytes, now: float, prefix: bytes) -> None:
        self._finished[tid] = now
        self._finished_prefix[prefix] = tid
        self._prefix_of[tid] = prefix
        while len(self._finished) > MAX_REMEMBERED:
            self._forget(self._finished.popitem(last=False)[0])

    def _forget(self, tid: bytes) -> None:
        prefix = self._prefix_of.pop(tid, None)
        if prefix is not None:
            del self._finished_prefix[prefix]


def _new_map(size: int) -> mmap.mmap:
    """Anonymous memory of ``size`` bytes, zero, taken page by page as it is written."""
    return mmap.mmap(-1, size)


def _reservation(geo: Geometry) -> int:
    """What a transfer of this geometry may hold: its map of ``stripes * k * block_size``
    bytes, and ``BLOCK_OVERHEAD`` per block for the bookkeeping (charged, not all used)."""
    return geo.stripes * geo.k * (geo.block_size + BLOCK_OVERHEAD)


def _geometry(packet: BlockPacket) -> Geometry:
    return Geometry(packet.k, packet.m, packet.block_size, packet.total_len)
