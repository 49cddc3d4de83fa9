"""Stripe geometry, zfec encoding and decoding, and the interleaved send order.

An object of ``total_len`` bytes is zero-padded and cut into stripes of ``k`` blocks of
``block_size`` bytes; zfec turns each stripe into ``m`` blocks, the first ``k`` of which are the
data itself (a systematic code), and any ``k`` of the ``m`` rebuild the stripe. Stripes are as
large as zfec allows (``m <= 256``), so that a few percent of random loss, which spreads evenly
over a large stripe, is covered by a few percent of parity. Blocks leave in rounds: block 0 of
every stripe, then block 1 of every stripe, and so on, so a burst of lost datagrams takes at
most ``ceil(burst / stripes)`` blocks from any one stripe.

Pure: bytes in, bytes out; no sockets, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from relay.diode.packet import (
    DEFAULT_BLOCK_SIZE,
    MAX_BLOCKS,
    PacketWriter,
    stripe_count,
)

DEFAULT_OVERHEAD = 0.25
MAX_OVERHEAD = 10.0
MIN_PARITY = 2  # small stripes get at least two parity blocks when overhead > 0


@dataclass(frozen=True)
class Geometry:
    """How one object is cut: ``k`` of ``m`` blocks per stripe, ``block_size`` bytes each."""

    k: int
    m: int
    block_size: int
    total_len: int

    @property
    def stripes(self) -> int:
        """Number of stripes."""
        return stripe_count(self.total_len, self.k, self.block_size)

    @property
    def wire_blocks(self) -> int:
        """Datagrams in one full pass."""
        return self.stripes * self.m


def parity_blocks(k: int, overhead: float) -> int:
    """Parity blocks for a stripe of ``k`` data blocks at ``overhead`` (parity / data)."""
    if overhead <= 0:
        return 0
    return max(math.ceil(k * overhead - 1e-9), MIN_PARITY)


def choose_geometry(
    total_len: int, overhead: float = DEFAULT_OVERHEAD, block_size: int = DEFAULT_BLOCK_SIZE
) -> Geometry:
    """The largest balanced stripes that fit zfec's ``m <= 256`` at ``overhead``."""
    if not 0 <= overhead <= MAX_OVERHEAD:
        raise ValueError(f"overhead {overhead} outside 0..{MAX_OVERHEAD}")
    if total_len < 1:
        raise ValueError("nothing to send")
    k_max = MAX_BLOCKS
    while k_max > 1 and k_max + parity_blocks(k_max, overhead) > MAX_BLOCKS:
        k_max -= 1
    blocks = -(-total_len // block_size)
    stripes = -(-blocks // k_max)
    k = -(-blocks // stripes)
    m = min(MAX_BLOCKS, k + parity_blocks(k, overhead))
    return Geometry(k=k, m=m, block_size=block_size, total_len=total_len)


@lru_cache(maxsize=16)
def _encoder(k: int, m: int) -> Any:
    import zfec

    return zfec.Encoder(k, m)


@lru_cache(maxsize=16)
def decoder(k: int, m: int) -> Any:
    """zfec's decoder for ``k`` of ``m`` (cached: building one computes its matrix)."""
    import zfec

    return zfec.Decoder(k, m)


def stripe_blocks(obj: bytes | memoryview, geo: Geometry) -> list[list[memoryview]]:
    """The data blocks of every stripe as views into ``obj`` (only the padded tail is copied)."""
    size, per_stripe = geo.block_size, geo.k * geo.block_size
    whole = len(obj) // per_stripe  # stripes that need no padding
    view = memoryview(obj)
    stripes = [
        [view[s * per_stripe + i * size : s * per_stripe + (i + 1) * size] for i in range(geo.k)]
        for s in range(min(whole, geo.stripes))
    ]
    for s in range(len(stripes), geo.stripes):
        padded = memoryview(
            bytes(view[s * per_stripe : (s + 1) * per_stripe]).ljust(per_stripe, b"\0")
        )
        stripes.append([padded[i * size : (i + 1) * size] for i in range(geo.k)])
    return stripes


def encode_parity(geo: Geometry, data: Sequence[bytes | memoryview]) -> list[bytes]:
    """The ``m - k`` parity blocks of one stripe from its ``k`` data blocks (zfec releases the
    GIL while it computes, so this may run in a helper thread)."""
    if geo.m == geo.k:
        return []
    parity = _encoder(geo.k, geo.m).encode(tuple(data), tuple(range(geo.k, geo.m)))
    return [bytes(block) for block in parity]


def encode_parity_rounds(
    geo: Geometry, data: Sequence[tuple[memoryview, ...]], first: int, count: int
) -> list[list[bytes]]:
    """Parity blocks ``first .. first+count-1`` of every stripe (one list per stripe): a few
    rounds per zfec call cost less than one each (zfec takes the ``k`` buffers once per call)."""
    encoder = _encoder(geo.k, geo.m)
    wanted = tuple(range(first, min(first + count, geo.m)))
    return [[bytes(block) for block in encoder.encode(blocks, wanted)] for blocks in data]


def interleaved_packets(obj: bytes | memoryview, geo: Geometry, transfer: bytes) -> Iterator[bytes]:
    """Every datagram of one pass, in round order: block ``r`` of each stripe, for r in 0..m-1.

    Parity is computed lazily during the data rounds (which need no encoding). The sender
    (:mod:`relay.diode.sender`) sends the same datagrams in the same order, with parity encoded
    ahead in a helper thread.
    """
    data = stripe_blocks(obj, geo)
    writer = PacketWriter(transfer, geo.k, geo.m, geo.block_size, geo.total_len)
    parity: list[list[bytes]] = []
    for index in range(geo.m):
        for number in range(geo.stripes):
            block = data[number][index] if index < geo.k else parity[number][index - geo.k]
            yield writer.datagram(number, index, block)
        wanted = geo.stripes if index + 1 >= geo.k else (index + 1) * geo.stripes // geo.k
        while len(parity) < wanted:
            parity.append(encode_parity(geo, data[len(parity)]))
