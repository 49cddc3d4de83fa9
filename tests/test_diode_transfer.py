"""End to end over real UDP on 127.0.0.1: sender process -> lossy relay -> receiver process.

Within the FEC budget the file must arrive byte-equal; beyond it nothing may appear (never a
corrupt or partial file). Every receiver is stopped with SIGTERM and must exit 0.
"""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.diode.packet import HEADER_SIZE
from relay.errors import UsageError
from relay.transport import TransportOptions, open_destination
from tests.diode.harness import Damage, LossyRelay, Receiver, make_file, send, visible_files

pytestmark = pytest.mark.slow  # runs diode sender and receiver processes

RATE = "8000000"  # bytes/s: comfortably below what the relay thread and receiver absorb


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    proc = Receiver(tmp_path / "inbox", "--expire", "2s")
    yield proc
    assert proc.stop() == 0, proc.log


def _relay(receiver: Receiver, damage: Damage) -> LossyRelay:
    relay = LossyRelay(("127.0.0.1", receiver.port), damage)
    relay.start()
    return relay


def _transfer(tmp_path: Path, receiver: Receiver, damage: Damage, *extra: str) -> bytes:
    data = make_file(tmp_path / "x.bundle", 1_500_000, seed=damage.seed)
    relay = _relay(receiver, damage)
    try:
        result = send([tmp_path / "x.bundle"], relay.address, "--rate", RATE, *extra)
        assert result.returncode == 0, result.stderr
        receiver.wait_for(r"received x\.bundle")
    finally:
        relay.stop()
    return data


@pytest.mark.parametrize(
    "damage",
    [
        Damage(seed=10),
        Damage(loss=0.01, seed=11),
        Damage(loss=0.05, seed=12),
        Damage(loss=0.10, seed=13),
        Damage(burst_every=1000, burst_len=120, seed=14),
        Damage(duplicate=0.2, seed=15),
        Damage(reorder_window=64, seed=16),
        Damage(loss=0.03, duplicate=0.05, reorder_window=16, flip=0.02, seed=17),
    ],
    ids=["clean", "loss1", "loss5", "loss10", "burst", "dup", "reorder", "mixed+bitflips"],
)
def test_file_arrives_intact_within_the_fec_budget(
    tmp_path: Path, receiver: Receiver, damage: Damage
) -> None:
    data = _transfer(tmp_path, receiver, damage)
    assert (receiver.out_dir / "x.bundle").read_bytes() == data
    assert visible_files(receiver.out_dir) == ["x.bundle"]
    assert (receiver.out_dir / "x.bundle").stat().st_mode & 0o777 == 0o600
    assert receiver.out_dir.stat().st_mode & 0o777 == 0o700


def test_beyond_the_budget_nothing_is_written(tmp_path: Path, receiver: Receiver) -> None:
    make_file(tmp_path / "x.bundle", 1_500_000)
    relay = _relay(receiver, Damage(loss=0.25, seed=20))
    try:
        result = send([tmp_path / "x.bundle"], relay.address, "--fec-overhead", "0.05")
        assert result.returncode == 0, result.stderr
        receiver.wait_for(r"expired transfer [0-9a-f]{16}: incomplete", fail_on="received")
    finally:
        relay.stop()
    assert visible_files(receiver.out_dir) == []
    assert not any("received" in line for line in receiver.log)


def test_burst_longer_than_parity_is_spread_by_interleaving(
    tmp_path: Path, receiver: Receiver
) -> None:
    # 1.5 MB at the default overhead: 6 stripes of 179 + 45 blocks. 240 consecutive datagrams
    # lost is five times a stripe's parity, but interleaving takes only 40 from each stripe.
    damage = Damage(burst_every=100_000, burst_len=241, seed=21)
    data = _transfer(tmp_path, receiver, damage)
    assert (receiver.out_dir / "x.bundle").read_bytes() == data


def test_carousel_repeat_writes_the_file_once(tmp_path: Path, receiver: Receiver) -> None:
    data = _transfer(tmp_path, receiver, Damage(loss=0.02, seed=22), "--repeat", "3")
    assert receiver.stop(signal.SIGINT) == 0  # Ctrl-C stops as cleanly as SIGTERM
    assert visible_files(receiver.out_dir) == ["x.bundle"]
    assert (receiver.out_dir / "x.bundle").read_bytes() == data
    assert sum("received" in line for line in receiver.log) == 1


def test_receiver_restart_mid_transfer_with_repeat(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    data = make_file(tmp_path / "x.bundle", 500_000, seed=23)
    first = Receiver(inbox)
    relay = LossyRelay(("127.0.0.1", first.port), Damage(loss=0.02, seed=23))
    relay.start()
    # ~0.65 s per pass, 8 passes: the second receiver has seconds to start and still hear two.
    sender = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "relay",
            "diode",
            "send",
            str(tmp_path / "x.bundle"),
            "--to",
            relay.address,
            "--rate",
            "1000000",
            "--repeat",
            "8",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    second = None
    try:
        assert relay.when_seen(150).wait(30)  # a third into the first pass
        assert first.stop() == 0
        assert visible_files(inbox) == []  # the half-received file left nothing behind
        second = Receiver(inbox)
        relay.target = ("127.0.0.1", second.port)
        second.wait_for(r"received x\.bundle")
    finally:
        sender.kill()
        sender.wait()
        relay.stop()
        if second is not None:
            assert second.stop() == 0
    assert visible_files(inbox) == ["x.bundle"]
    assert (inbox / "x.bundle").read_bytes() == data


def test_several_files_and_names_are_sanitised(tmp_path: Path, receiver: Receiver) -> None:
    files = {"a.bundle": 10, ".hidden conf": 3000, "big.bin": 700_000}
    contents = {name: make_file(tmp_path / name, size, seed=size) for name, size in files.items()}
    relay = _relay(receiver, Damage(loss=0.02, seed=24))
    try:
        result = send([tmp_path / n for n in files], relay.address, "--rate", RATE)
        assert result.returncode == 0, result.stderr
        for _ in files:
            receiver.wait_for(r"received ")
    finally:
        relay.stop()
    assert visible_files(receiver.out_dir) == ["a.bundle", "big.bin", "hidden_conf"]
    assert (receiver.out_dir / "hidden_conf").read_bytes() == contents[".hidden conf"]
    assert (receiver.out_dir / "big.bin").read_bytes() == contents["big.bin"]


def test_malformed_and_oversized_datagrams_are_dropped(tmp_path: Path, receiver: Receiver) -> None:
    junk = [
        b"",
        b"hello",
        b"RDIO" + b"\0" * 60,
        b"\xff" * 65000,
        # a well-formed header announcing a 2**60-byte transfer (CRC is wrong anyway)
        b"RDIO\x01\x01"
        + struct.pack(">HHH8sQIHI", 200, 256, 16, b"A" * 8, 2**60, 0, 0, 0)
        + b"\0" * 16,
    ]
    assert len(junk[-1]) == HEADER_SIZE + 16
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for datagram in junk:
            sock.sendto(datagram, ("127.0.0.1", receiver.port))
    data = _transfer(tmp_path, receiver, Damage(seed=25))
    assert (receiver.out_dir / "x.bundle").read_bytes() == data
    assert receiver.stop() == 0
    assert any(f"{len(junk)} malformed" in line for line in receiver.log), receiver.log


def test_diode_destination_puts_a_bundle(tmp_path: Path, receiver: Receiver) -> None:
    destination = open_destination(
        f"udp://127.0.0.1:{receiver.port}",
        TransportOptions(extra={"fec_overhead": "0.5", "rate": RATE, "repeat": "2"}),
    )
    where = destination.put("../t.bundle", b"sealed bundle bytes")
    destination.close()
    assert where == f"udp://127.0.0.1:{receiver.port}/t.bundle"
    receiver.wait_for(r"received t\.bundle")
    assert (receiver.out_dir / "t.bundle").read_bytes() == b"sealed bundle bytes"
    with pytest.raises(UsageError) as err:
        open_destination("udp://127.0.0.1", TransportOptions())
    assert err.value.code == "bad_url"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["send", "missing.bundle", "--to", "udp://127.0.0.1:9"], "not_found"),
        (["send", "x", "--to", "udp://127.0.0.1"], "bad_url"),
        (["send", "x", "--to", "udp://127.0.0.1:9", "--fec-overhead", "lots"], "bad_option"),
        (["send", "x", "--to", "udp://127.0.0.1:9", "--rate", "-5"], "bad_option"),
        (["receive", "--listen", "nowhere", "--out", "o"], "bad_address"),
        (["receive", "--listen", "127.0.0.1:0", "--out", "o", "--expire", "soon"], "bad_duration"),
        (["receive", "--listen", "127.0.0.1:0", "--out", "a_file"], "transport_failed"),
    ],
)
def test_bad_input_is_one_line_with_a_code(tmp_path: Path, args: list[str], code: str) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    result = subprocess.run(
        [sys.executable, "-m", "relay", "diode", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert result.stderr.startswith(f"relay: error: {code}: ")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "gro"])
def test_batched_sends_arrive_as_the_datagrams_they_were_built_from(offload: bool) -> None:
    """Several datagrams per send call (UDP segmentation offload where the kernel has it) reach
    a plain socket, and a socket reading with receive offload, as the same datagrams in order."""
    from relay.diode.receiver import MAX_DATAGRAM, datagrams, open_socket
    from relay.diode.sender import TokenBucket, _Link

    inbox = open_socket("127.0.0.1", 0)
    if not offload:
        inbox.setsockopt(17, 104, 0)  # UDP_GRO off again
    sent = [bytes([n]) * 38 + bytes([n ^ 0xFF]) * 1400 for n in range(70)]
    with inbox, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        link = _Link(out, inbox.getsockname(), TokenBucket(0))
        link.start(len(sent[0]), 16)
        for datagram in sent:
            link.add(datagram[:38], memoryview(datagram)[38:])
        link.flush()
        got: list[bytes] = []
        inbox.settimeout(10)
        while len(got) < len(sent):
            data, ancillary, _, _ = inbox.recvmsg(MAX_DATAGRAM, socket.CMSG_SPACE(4))
            got += datagrams(data, ancillary)
    assert got == sent
