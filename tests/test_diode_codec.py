"""The pure core of the diode transport: packet codec, FEC stripes, manifest, assembly."""

from __future__ import annotations

import contextlib
import hashlib
import io
import random
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.diode.arguments import parse_listen, parse_send_options, parse_udp_url
from relay.diode.assembly import Assembler, ReceiverLimits
from relay.diode.fec import (
    choose_geometry,
    interleaved_packets,
    parity_blocks,
)
from relay.diode.manifest import (
    FileChanged,
    ObjectRejected,
    decode_object,
    encode_object,
    read_object,
    safe_name,
)
from relay.diode.packet import (
    HEADER_SIZE,
    BlockPacket,
    PacketRejected,
    PacketWriter,
    decode_packet,
    encode_packet,
)
from relay.diode.sender import TokenBucket
from relay.errors import UsageError

TID = bytes.fromhex("0011223344556677")


def _packet(**changes: object) -> BlockPacket:
    fields: dict[str, object] = {
        "transfer": TID,
        "k": 4,
        "m": 6,
        "block_size": 16,
        "total_len": 60,
        "stripe": 0,
        "index": 5,
        "payload": bytes(range(16)),
    }
    fields.update(changes)
    return BlockPacket(**fields)  # type: ignore[arg-type]


def _datagrams(data: bytes, overhead: float = 0.25, name: str = "x.bundle") -> list[bytes]:
    obj = encode_object(name, data)
    return list(interleaved_packets(obj, choose_geometry(len(obj), overhead), TID))


def _feed(assembler: Assembler, datagrams: list[bytes], now: float = 0.0) -> list[object]:
    events = [assembler.accept(d, now) for d in datagrams]
    return [e for e in events if e is not None]


# --- packet codec ---------------------------------------------------------------------------


def test_packet_round_trip() -> None:
    packet = _packet()
    datagram = encode_packet(packet)
    assert len(datagram) == HEADER_SIZE + 16 == 38 + 16
    assert datagram[:6] == b"RDIO\x01\x01"
    assert decode_packet(datagram) == packet


def _recrc(datagram: bytes) -> bytes:
    body = datagram[: HEADER_SIZE - 4]
    payload = datagram[HEADER_SIZE:]
    return body + struct.pack(">I", zlib.crc32(payload, zlib.crc32(body))) + payload


@pytest.mark.parametrize(
    ("offset", "value", "reason"),
    [
        (0, b"XDIO", "bad magic"),
        (4, b"\x02", "unsupported version"),
        (5, b"\x02", "unsupported version"),
        (6, b"\x00\x07", "bad stripe geometry"),  # k > m
        (8, b"\x01\x01", "bad stripe geometry"),  # m = 257
        (28, b"\x00\x00\x00\x09", "outside the transfer"),  # stripe beyond the object
        (32, b"\x00\x06", "outside the transfer"),  # index = m
    ],
)
def test_bad_header_fields_are_rejected(offset: int, value: bytes, reason: str) -> None:
    datagram = bytearray(encode_packet(_packet()))
    datagram[offset : offset + len(value)] = value
    with pytest.raises(PacketRejected, match=reason):
        decode_packet(_recrc(bytes(datagram)))


@pytest.mark.parametrize("cut", [0, 10, HEADER_SIZE - 1, HEADER_SIZE + 15])
def test_short_or_truncated_datagrams_are_rejected(cut: int) -> None:
    with pytest.raises(PacketRejected):
        decode_packet(encode_packet(_packet())[:cut])


def test_oversized_datagram_and_flipped_bit_are_rejected() -> None:
    datagram = encode_packet(_packet())
    with pytest.raises(PacketRejected, match="does not match block size"):
        decode_packet(datagram + b"\0" * 60000)
    flipped = bytearray(datagram)
    flipped[-1] ^= 0x01
    with pytest.raises(PacketRejected, match="checksum"):
        decode_packet(bytes(flipped))


@settings(deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_decoder(blob: bytes) -> None:
    with contextlib.suppress(PacketRejected):
        decode_packet(b"RDIO\x01\x01" + blob)


# --- geometry and FEC -------------------------------------------------------------------------


def test_geometry_uses_large_stripes_within_zfec_limits() -> None:
    geo = choose_geometry(50_000_000, 0.1)
    assert geo.m <= 256
    assert geo.k >= 200
    assert geo.m - geo.k >= 0.1 * geo.k
    assert geo.stripes * geo.k * geo.block_size >= 50_000_000
    assert parity_blocks(1, 0.05) == 2  # small stripes keep a floor of parity
    assert choose_geometry(10, 0.0).m == choose_geometry(10, 0.0).k == 1


@settings(max_examples=40, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=9000),
    overhead=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    seed=st.integers(0, 2**32),
)
def test_any_k_blocks_rebuild_a_stripe(data: bytes, overhead: float, seed: int) -> None:
    """Any ``k`` of a stripe's ``m`` datagrams, in any order, give the stripe back: the sender's
    datagrams, the receiver's assembly and decoding."""
    obj = encode_object("x.bundle", data)
    geo = choose_geometry(len(obj), overhead, block_size=64)
    rng = random.Random(seed)
    by_stripe: dict[int, list[bytes]] = {}
    for datagram in interleaved_packets(obj, geo, TID):
        by_stripe.setdefault(decode_packet(datagram).stripe, []).append(datagram)
    assert sorted(by_stripe) == list(range(geo.stripes))
    assert all(len(blocks) == geo.m for blocks in by_stripe.values())
    kept = [d for blocks in by_stripe.values() for d in rng.sample(blocks, geo.k)]
    rng.shuffle(kept)
    events = _feed(Assembler(), kept)
    assert [bytes(e.file.data) for e in events] == [data]  # type: ignore[attr-defined]


def test_send_order_interleaves_stripes() -> None:
    datagrams = _datagrams(random.Random(1).randbytes(1_000_000))
    first = [decode_packet(d) for d in datagrams[:20]]
    stripes = first[0].stripes
    assert stripes > 1
    assert [p.stripe for p in first[:stripes]] == list(range(stripes))
    assert {p.index for p in first[:stripes]} == {0}


# --- manifest and names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "written"),
    [
        ("x.bundle", "x.bundle"),
        ("../../etc/passwd", "passwd"),
        ("/abs/path/y.bundle", "y.bundle"),
        ("..\\windows\\z.bundle", "z.bundle"),
        (".hidden", "hidden"),
        ("...", "unnamed"),
        ("", "unnamed"),
        ("a b;rm -rf$(x).bundle", "a_b_rm_-rf__x_.bundle"),
        ("é.bundle", "_.bundle"),
        ("x" * 400, "x" * 255),
    ],
)
def test_safe_name(sent: str, written: str) -> None:
    assert safe_name(sent) == written


def test_manifest_from_a_hostile_sender_is_sanitised_on_receipt() -> None:
    name = b"../../.ssh/authorized_keys"
    data = b"ssh-ed25519 AAAA"
    obj = struct.pack(">HQ32s", len(name), len(data), hashlib.sha256(data).digest()) + name + data
    assert decode_object(obj).name == "authorized_keys"


def test_manifest_mismatches_are_rejected() -> None:
    obj = encode_object("x.bundle", b"payload")
    assert decode_object(obj).data == b"payload"
    with pytest.raises(ObjectRejected) as err:
        decode_object(obj[:-1] + b"P")
    assert err.value.code == "checksum_mismatch"
    for bad in (obj[:10], obj + b"\0", obj[:-1]):
        with pytest.raises(ObjectRejected):
            decode_object(bad)


def test_reading_a_file_into_its_object_matches_encoding_it() -> None:
    for data in (b"", b"x", random.Random(16).randbytes(70_000)):
        obj = read_object("../a b.bundle", io.BytesIO(data), len(data))
        assert bytes(obj) == encode_object("../a b.bundle", data)
    with pytest.raises(FileChanged):
        read_object("a.bundle", io.BytesIO(b"short"), 6)
    with pytest.raises(FileChanged):
        read_object("a.bundle", io.BytesIO(b"longer"), 5)


# --- assembly ---------------------------------------------------------------------------------


def test_assembly_survives_loss_duplicates_and_reordering() -> None:
    data = random.Random(2).randbytes(300_000)
    datagrams = _datagrams(data)
    rng = random.Random(3)
    kept = [d for d in datagrams if rng.random() > 0.1]
    kept += rng.sample(kept, 200)
    rng.shuffle(kept)
    assembler = Assembler()
    events = _feed(assembler, kept)
    assert len(events) == 1
    assert events[0].kind == "completed"  # type: ignore[attr-defined]
    assert events[0].file.data == data  # type: ignore[attr-defined]
    assert assembler.open_transfers == 0
    assert assembler.counters.duplicate > 0


def test_blocks_in_any_order_land_in_place() -> None:
    """A parity block takes the slot of a data block not yet arrived and is moved aside when
    that block comes after all; a stripe completes with its first ``k`` blocks, whatever they
    are, and is rebuilt in place."""
    data = random.Random(12).randbytes(300_000)
    datagrams = _datagrams(data, overhead=0.5)
    k = decode_packet(datagrams[0]).k
    parity = [d for d in datagrams if decode_packet(d).index >= k]
    primary = [d for d in datagrams if decode_packet(d).index < k]
    # Half the parity first (into the top slots), then the data from the top down: every data
    # block finds a parity block in its slot until the stripe is full.
    descending = sorted(primary, key=lambda d: -decode_packet(d).index)
    assembler = Assembler()
    events = _feed(assembler, parity[: len(parity) // 2] + descending)
    assert [e.file.data for e in events] == [data]  # type: ignore[attr-defined]
    # Data only, in order: nothing to decode.
    assert [e.file.data for e in _feed(Assembler(), primary)] == [data]  # type: ignore[attr-defined]
    # All parity, then data shuffled.
    random.Random(15).shuffle(primary)
    events = _feed(Assembler(), parity + primary)
    assert [e.file.data for e in events] == [data]  # type: ignore[attr-defined]


def test_stripes_decoded_in_a_pool_give_the_same_file() -> None:
    data = random.Random(13).randbytes(600_000)
    rng = random.Random(14)
    kept = [d for d in _datagrams(data) if rng.random() > 0.12]
    with ThreadPoolExecutor(2) as pool:
        assembler = Assembler(decode_pool=pool)
        events = _feed(assembler, kept)
        assert [e.file.data for e in events] == [data]  # type: ignore[attr-defined]
        # An incomplete transfer whose stripes are being decoded expires cleanly: every
        # stripe lost its block 0, the last stripe all but one block.
        obj = encode_object("y.bundle", data)
        other = list(interleaved_packets(obj, choose_geometry(len(obj), 0.25), b"\x01" * 8))
        last = decode_packet(other[0]).stripes - 1
        packets = [decode_packet(d) for d in other]
        partial = [
            d
            for d, p in zip(other, packets, strict=True)
            if p.index > 0 and (p.stripe < last or p.index == 1)
        ]
        assert _feed(assembler, partial, 1.0) == []
        assert assembler.open_transfers == 1
        assert [e.kind for e in assembler.expire(100.0)] == ["expired"]
        assert assembler.open_transfers == 0


def test_carousel_repeat_completes_once() -> None:
    datagrams = _datagrams(b"bundle bytes" * 500)
    assembler = Assembler(ReceiverLimits(expire_after=60))
    assert len(_feed(assembler, datagrams * 3)) == 1
    assert assembler.counters.accepted + assembler.counters.duplicate == 3 * len(datagrams)
    # Forgotten once nothing of it was heard for the expiry time: then it is a new transfer.
    assert _feed(assembler, datagrams[:1], now=30.0) == []
    assert assembler.expire(89.0) == []
    assert len(_feed(assembler, datagrams, now=89.0)) == 0
    assembler.expire(150.0)
    assert len(_feed(assembler, datagrams, now=150.0)) == 1


def test_too_much_loss_gives_no_file_and_expires() -> None:
    datagrams = _datagrams(random.Random(4).randbytes(100_000), overhead=0.1)
    rng = random.Random(5)
    assembler = Assembler(ReceiverLimits(expire_after=60))
    assert _feed(assembler, [d for d in datagrams if rng.random() > 0.5], now=1.0) == []
    assert assembler.expire(60.9) == []
    (expired,) = assembler.expire(61.0)
    assert expired.kind == "expired"
    assert assembler.open_transfers == 0
    assert assembler.bytes_reserved == 0


def test_forged_block_with_valid_crc_is_caught_by_sha256() -> None:
    datagrams = _datagrams(random.Random(6).randbytes(50_000))
    victim = decode_packet(datagrams[0])
    forged = encode_packet(
        BlockPacket(**{**victim.__dict__, "payload": bytes(len(victim.payload))})
    )
    events = _feed(Assembler(), [forged, *datagrams[1:]])
    assert [e.kind for e in events] == ["rejected"]  # type: ignore[attr-defined]


def test_caps_refuse_oversized_and_excess_transfers() -> None:
    limits = ReceiverLimits(max_transfers=1, max_bytes=1 << 20, max_file_bytes=100_000)
    big = _datagrams(b"\1" * 200_000)
    assembler = Assembler(limits)
    (refused,) = _feed(assembler, big[:50])  # reported once, not once per datagram
    assert refused.kind == "refused"  # type: ignore[attr-defined]
    assert "over the cap" in refused.detail  # type: ignore[attr-defined]
    assert assembler.open_transfers == 0
    assert assembler.counters.refused == 50
    small = _datagrams(b"\2" * 50_000)
    assembler.accept(small[0], 0.0)
    other = encode_object("y.bundle", b"\3" * 1000)
    second = next(interleaved_packets(other, choose_geometry(len(other)), b"\xff" * 8))
    busy = assembler.accept(second, 0.0)
    assert busy is not None
    assert busy.kind == "refused"
    assert assembler.open_transfers == 1
    assert assembler.counters.refused == 51


def test_byte_cap_bounds_what_is_held() -> None:
    assembler = Assembler(ReceiverLimits(max_bytes=110_000))
    assembler.accept(_datagrams(b"\1" * 90_000)[0], 0.0)
    assert assembler.open_transfers == 1
    other = encode_object("y.bundle", b"\3" * 30_000)
    assembler.accept(next(interleaved_packets(other, choose_geometry(len(other)), b"\xee" * 8)), 0)
    assert assembler.open_transfers == 1
    assert assembler.bytes_reserved <= 110_000


def test_tiny_blocks_are_charged_for_their_bookkeeping() -> None:
    # 1-byte blocks: 300 kB of payload would be millions of Python objects; it must not fit
    # under a cap that 300 kB of ordinary 1400-byte blocks fit under.
    limits = ReceiverLimits(max_bytes=1 << 20)
    obj = encode_object("t.bundle", b"\5" * 300_000)
    tiny = choose_geometry(len(obj), 0.1, block_size=1)
    event = Assembler(limits).accept(next(interleaved_packets(obj, tiny, TID)), 0.0)
    assert event is not None
    assert event.kind == "refused"
    assert _feed(Assembler(limits), _datagrams(b"\5" * 300_000))[0].kind == "completed"  # type: ignore[attr-defined]


def test_a_transfer_is_given_memory_only_once_admitted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caps are checked before a transfer's map is made (a refused datagram costs no
    allocation), and a map the system cannot give is a refusal, not a crash."""
    from relay.diode import assembly

    def no_map(*args: object) -> object:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(assembly, "_new_map", no_map)
    obj = encode_object("t.bundle", b"\5" * 300_000)
    tiny = choose_geometry(len(obj), 0.1, block_size=1)
    over = Assembler(ReceiverLimits(max_bytes=1 << 20)).accept(
        next(interleaved_packets(obj, tiny, TID)), 0.0
    )
    assert over is not None
    assert "do not fit" in over.detail
    unmapped = Assembler().accept(_datagrams(b"\6" * 1000)[0], 0.0)
    assert unmapped is not None
    assert unmapped.kind == "refused"
    assert "cannot map" in unmapped.detail


def test_conflicting_geometry_for_an_open_transfer_is_dropped() -> None:
    datagrams = _datagrams(b"\4" * 20_000)
    assembler = Assembler()
    assembler.accept(datagrams[0], 0.0)
    odd = encode_packet(_packet(total_len=20, k=1, m=1, index=0, transfer=TID))
    assembler.accept(odd, 0.0)
    assert assembler.counters.malformed == 1


def test_damaged_datagrams_of_an_open_transfer_are_dropped() -> None:
    """Datagrams whose header start matches an open transfer take the short path: length,
    CRC, stripe and index are still checked, and nothing damaged reaches the stripes."""
    datagrams = _datagrams(bytes(range(256)) * 400)
    assembler = Assembler()
    assert assembler.accept(datagrams[0], 0.0) is None
    flipped = bytearray(datagrams[1])
    flipped[-1] ^= 1
    cut = datagrams[1][:-1]
    beyond = bytearray(datagrams[1])
    struct.pack_into(">IH", beyond, 28, 10_000, 0)  # stripe far outside the transfer
    struct.pack_into(
        ">I", beyond, 34, zlib.crc32(bytes(beyond[38:]), zlib.crc32(bytes(beyond[:34])))
    )
    for bad in (bytes(flipped), cut, bytes(beyond)):
        assert assembler.accept(bad, 0.0) is None
    assert assembler.counters.malformed == 3
    events = [assembler.accept(d, 0.0) for d in datagrams[1:]]
    completed = [e for e in events if e is not None]
    assert [e.kind for e in completed] == ["completed"]
    assert completed[0].file is not None
    assert completed[0].file.data == bytes(range(256)) * 400


def test_send_order_and_content_do_not_depend_on_batching() -> None:
    """The sender's batches hold distinct stripes only (a batch lost whole costs any stripe at
    most one block), and small transfers are not batched."""
    from relay.diode.sender import GSO_MAX_SEGMENTS, batch_limit

    assert batch_limit(1) == 1
    assert batch_limit(7) == 1
    assert batch_limit(8) == 2
    assert batch_limit(161) == min(GSO_MAX_SEGMENTS, 40)
    for stripes in range(1, 400):
        assert batch_limit(stripes) <= max(1, stripes // 4)


def test_offloaded_reads_are_split_into_datagrams() -> None:
    from relay.diode.receiver import datagrams

    gro = [(17, 104, struct.pack("=i", 4))]
    assert datagrams(b"aaaabbbbcc", gro) == [b"aaaa", b"bbbb", b"cc"]
    assert datagrams(b"aaaa", gro) == [b"aaaa"]
    assert datagrams(b"aaaabbbb", []) == [b"aaaabbbb"]
    assert datagrams(b"aaaabbbb", [(17, 104, struct.pack("=i", 0))]) == [b"aaaabbbb"]


# --- arguments and pacing ---------------------------------------------------------------------


def test_addresses_and_options() -> None:
    assert parse_udp_url("udp://127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_udp_url("udp://[::1]:9000") == ("::1", 9000)
    assert parse_listen("0.0.0.0:0") == ("0.0.0.0", 0)
    assert parse_send_options("0.5", "1000", "3").repeat == 3
    for url in ("udp://host", "tcp://h:1", "udp://h:99999", "udp://h:1/path", "udp://:5"):
        with pytest.raises(UsageError) as err:
            parse_udp_url(url)
        assert err.value.code == "bad_url"
    for listen in ("9000", "h:x", ":9000", "h:70000"):
        with pytest.raises(UsageError):
            parse_listen(listen)
    for args in (("-1", None, None), ("nan", None, None), (None, "x", None), (None, None, "0")):
        with pytest.raises(UsageError) as err:
            parse_send_options(*args)
        assert err.value.code == "bad_option"


def test_token_bucket_paces_to_the_rate() -> None:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    bucket = TokenBucket(rate=1000, burst=100, clock=lambda: clock[0], sleep=sleep)
    for _ in range(100):
        bucket.take(100)
    assert 9.8 <= clock[0] <= 10.0


def test_packet_writer_matches_the_reference_encoder() -> None:
    writer = PacketWriter(TID, 4, 6, 16, 60)
    for stripe, index in ((0, 0), (0, 5)):
        packet = _packet(stripe=stripe, index=index)
        assert writer.datagram(stripe, index, packet.payload) == encode_packet(packet)
    with pytest.raises(ValueError):
        writer.datagram(1, 0, bytes(16))


def test_empty_file_and_no_parity_round_trip() -> None:
    for data, overhead in ((b"", 0.25), (b"abc" * 1000, 0.0)):
        events = _feed(Assembler(), _datagrams(data, overhead=overhead, name="e.bundle"))
        assert [e.file.data for e in events] == [data]  # type: ignore[attr-defined]


def test_interleaving_spreads_a_burst_that_would_sink_one_stripe() -> None:
    data = random.Random(7).randbytes(1_500_000)
    datagrams = _datagrams(data)
    geo_k, geo_m = decode_packet(datagrams[0]).k, decode_packet(datagrams[0]).m
    burst = slice(300, 300 + 4 * (geo_m - geo_k))  # four times a stripe's parity, in a row
    events = _feed(Assembler(), datagrams[: burst.start] + datagrams[burst.stop :])
    assert [e.file.data for e in events] == [data]  # type: ignore[attr-defined]
    # The same burst against stripe-major order would have taken one stripe's blocks wholesale.
    stripe_major = sorted(
        datagrams, key=lambda d: (decode_packet(d).stripe, decode_packet(d).index)
    )
    kept = stripe_major[: burst.start] + stripe_major[burst.stop :]
    assert _feed(Assembler(), kept) == []
