"""The diode datagram: a fixed 38-byte header followed by one FEC block.

Layout (big-endian, see ``docs/diode.md`` for the normative spec)::

    magic      4s  b"RDIO"
    version    B   1
    kind       B   1 (block); anything else is rejected
    k          H   blocks needed per stripe, 1..256
    m          H   blocks produced per stripe, k..256
    block_size H   payload bytes per block, 1..MAX_BLOCK_SIZE
    transfer   8s  random id of one file transfer (the same across carousel passes)
    total_len  Q   bytes of the encoded object (manifest + file) before padding
    stripe     I   stripe number, 0..stripes-1
    index      H   block number within the stripe, 0..m-1
    crc        I   CRC-32 of every preceding header byte and of the payload

This module only parses and builds datagrams; it never touches a socket.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from relay.codes import BAD_PACKET
from relay.errors import RelayError

MAGIC = b"RDIO"
VERSION = 1
KIND_BLOCK = 1
MAX_BLOCKS = 256  # zfec's limit on m
MAX_BLOCK_SIZE = 8192
DEFAULT_BLOCK_SIZE = 1400  # 1438-byte datagrams fit a 1500-byte Ethernet MTU

_BODY = struct.Struct(">4sBBHHH8sQIH")
_TAIL = struct.Struct(">IH")  # stripe, index: the part that changes from block to block
_CRC = struct.Struct(">I")
HEADER_SIZE = _BODY.size + _CRC.size


class PacketRejected(RelayError):
    """A datagram is not a well-formed diode packet; the receiver drops it."""

    code = BAD_PACKET


@dataclass(frozen=True)
class BlockPacket:
    """One FEC block of one stripe of one transfer, with the geometry to place it."""

    transfer: bytes
    k: int
    m: int
    block_size: int
    total_len: int
    stripe: int
    index: int
    payload: bytes

    @property
    def stripes(self) -> int:
        """How many stripes the transfer has (derived from the geometry)."""
        return stripe_count(self.total_len, self.k, self.block_size)


def stripe_count(total_len: int, k: int, block_size: int) -> int:
    """Stripes needed to carry ``total_len`` bytes in stripes of ``k`` blocks."""
    per_stripe = k * block_size
    return max(1, -(-total_len // per_stripe))


def encode_packet(packet: BlockPacket) -> bytes:
    """The datagram for ``packet``; raises ``ValueError`` on a geometry a receiver would reject."""
    _check_geometry(packet, ValueError)
    body = _BODY.pack(
        MAGIC,
        VERSION,
        KIND_BLOCK,
        packet.k,
        packet.m,
        packet.block_size,
        packet.transfer,
        packet.total_len,
        packet.stripe,
        packet.index,
    )
    crc = zlib.crc32(packet.payload, zlib.crc32(body))
    return body + _CRC.pack(crc) + packet.payload


class PacketWriter:
    """Build the datagrams of one transfer quickly: the constant header part is packed once."""

    def __init__(self, transfer: bytes, k: int, m: int, block_size: int, total_len: int) -> None:
        probe = BlockPacket(transfer, k, m, block_size, total_len, 0, 0, bytes(block_size))
        self._prefix = encode_packet(probe)[: _BODY.size - _TAIL.size]
        self._prefix_crc = zlib.crc32(self._prefix)
        self._stripes = probe.stripes
        self._m = m
        self._block_size = block_size

    def datagram(self, stripe: int, index: int, payload: bytes | memoryview) -> bytes:
        """The datagram carrying block ``index`` of ``stripe``."""
        return self.header(stripe, index, payload) + payload

    def header(self, stripe: int, index: int, payload: bytes | memoryview) -> bytes:
        """The 38 bytes that go in front of ``payload`` (sent without joining the two)."""
        if not (0 <= stripe < self._stripes and 0 <= index < self._m):
            raise ValueError(f"block {stripe}/{index} outside the transfer")
        if len(payload) != self._block_size:
            raise ValueError("payload length does not match block size")
        tail = _TAIL.pack(stripe, index)
        crc = zlib.crc32(payload, zlib.crc32(tail, self._prefix_crc))
        return self._prefix + tail + _CRC.pack(crc)

    def round_headers(self, index: int, payloads: Sequence[bytes | memoryview]) -> list[bytes]:
        """The headers of block ``index`` of stripes ``0..len(payloads)-1`` (one send round),
        the same as :meth:`header` gives one by one."""
        if not (0 <= index < self._m and len(payloads) <= self._stripes):
            raise ValueError(f"round {index} outside the transfer")
        if any(len(payload) != self._block_size for payload in payloads):
            raise ValueError("payload length does not match block size")
        prefix, prefix_crc, crc32 = self._prefix, self._prefix_crc, zlib.crc32
        pack_tail, pack_crc = _TAIL.pack, _CRC.pack
        headers = []
        for stripe, payload in enumerate(payloads):
            tail = pack_tail(stripe, index)
            headers.append(prefix + tail + pack_crc(crc32(payload, crc32(tail, prefix_crc))))
        return headers


def decode_packet(datagram: bytes) -> BlockPacket:
    """Parse and check a datagram; raises :class:`PacketRejected` on anything malformed."""
    if len(datagram) < HEADER_SIZE:
        raise PacketRejected(f"datagram of {len(datagram)} bytes is shorter than a header")
    fields = _BODY.unpack_from(datagram)
    magic, version, kind, k, m, block_size, transfer, total_len, stripe, index = fields
    if magic != MAGIC:
        raise PacketRejected("bad magic")
    if version != VERSION or kind != KIND_BLOCK:
        raise PacketRejected(f"unsupported version {version} or kind {kind}")
    if len(datagram) != HEADER_SIZE + block_size:
        raise PacketRejected(f"datagram length {len(datagram)} does not match block size")
    (crc,) = _CRC.unpack_from(datagram, _BODY.size)
    payload = datagram[HEADER_SIZE:]
    if zlib.crc32(payload, zlib.crc32(datagram[: _BODY.size])) != crc:
        raise PacketRejected("checksum mismatch")
    packet = BlockPacket(transfer, k, m, block_size, total_len, stripe, index, payload)
    _check_geometry(packet, PacketRejected)
    return packet


def _check_geometry(packet: BlockPacket, error: type[Exception]) -> None:
    if not 1 <= packet.k <= packet.m <= MAX_BLOCKS:
        raise error(f"bad stripe geometry k={packet.k} m={packet.m}")
    if not 1 <= packet.block_size <= MAX_BLOCK_SIZE:
        raise error(f"bad block size {packet.block_size}")
    if len(packet.payload) != packet.block_size:
        raise error("payload length does not match block size")
    if len(packet.transfer) != 8:
        raise error("transfer id must be 8 bytes")
    if packet.total_len < 1:
        raise error("empty transfer")
    if packet.stripe >= packet.stripes or packet.index >= packet.m:
        raise error(f"block {packet.stripe}/{packet.index} outside the transfer")
