"""The diode as a transport destination and its receiver, over real loopback UDP:
``relay.transport.diode`` and ``relay.diode.receiver``."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from relay.codes import BAD_OPTION, BAD_URL, TRANSPORT_FAILED
from relay.diode import receiver
from relay.diode.assembly import Event
from relay.diode.manifest import ReceivedFile
from relay.errors import TransportError, UsageError
from relay.transport import TransportOptions, open_destination
from relay.transport.diode import DiodeDestination

WAIT = 30.0  # generous: an event, not a pace


@dataclass
class Heard:
    """What the receiver reported, with an event per line."""

    lines: list[str] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        if line.startswith("received "):
            self.arrived.set()


@dataclass
class Listening:
    port: int
    out: Path
    heard: Heard


@pytest.fixture
def listening(tmp_path: Path) -> Iterator[Listening]:
    sock = receiver.open_socket("127.0.0.1", 0)
    stop = threading.Event()
    heard = Heard()
    out = tmp_path / "received"
    thread = threading.Thread(
        target=receiver.receive_forever, args=(sock, out, stop, heard), daemon=True
    )
    thread.start()
    try:
        yield Listening(sock.getsockname()[1], out, heard)
    finally:
        stop.set()
        thread.join(WAIT)
        sock.close()


@pytest.mark.slow  # a UDP receiver thread: a server
def test_a_bundle_put_to_the_diode_arrives_whole_under_a_safe_name(listening: Listening) -> None:
    data = os.urandom(200_000)
    options = TransportOptions(extra={"rate": "0", "fec_overhead": "0.1"})
    destination = open_destination(f"udp://127.0.0.1:{listening.port}", options)
    assert isinstance(destination, DiodeDestination)
    where = destination.put("../.x.bundle", data)
    destination.close()
    assert where == f"udp://127.0.0.1:{listening.port}/x.bundle"
    assert listening.heard.arrived.wait(WAIT), listening.heard.lines
    path = listening.out / "x.bundle"
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in listening.out.iterdir()] == ["x.bundle"]  # nothing partial left


@pytest.mark.parametrize("location", ["udp://", "udp://host", "udp://127.0.0.1:99999"])
def test_a_bad_diode_url_is_refused_before_sending(location: str) -> None:
    with pytest.raises(UsageError) as refused:
        DiodeDestination(location)
    assert refused.value.code == BAD_URL


@pytest.mark.parametrize("extra", [{"rate": "-1"}, {"fec_overhead": "lots"}, {"repeat": "0"}])
def test_bad_send_options_are_refused(extra: dict[str, str]) -> None:
    with pytest.raises(UsageError) as refused:
        DiodeDestination("udp://127.0.0.1:9", TransportOptions(extra=extra))
    assert refused.value.code == BAD_OPTION


def test_a_port_that_cannot_be_bound_is_one_transport_error() -> None:
    with pytest.raises(TransportError) as refused:
        receiver.open_socket("192.0.2.1", 9)  # not an address of this machine
    assert refused.value.code == TRANSPORT_FAILED
    assert "cannot listen on 192.0.2.1:9" in refused.value.message


def test_a_completed_file_is_written_atomically_and_reported(tmp_path: Path) -> None:
    heard = Heard()
    event = Event("completed", "t1", "3 bytes", ReceivedFile("a.bundle", b"abc"))
    receiver._handle(event, tmp_path, heard)
    assert (tmp_path / "a.bundle").read_bytes() == b"abc"
    assert heard.lines == ["received a.bundle (3 bytes, transfer t1)"]


def test_a_file_that_cannot_be_written_is_reported_not_raised(tmp_path: Path) -> None:
    heard = Heard()
    (tmp_path / "blocked").write_bytes(b"")  # a file where the folder should be
    event = Event("completed", "t2", "1 byte", ReceivedFile("b.bundle", b"b"))
    receiver._handle(event, tmp_path / "blocked", heard)
    assert len(heard.lines) == 1
    assert heard.lines[0].startswith("cannot write b.bundle: ")


def test_other_events_are_described() -> None:
    heard = Heard()
    receiver._handle(Event("expired", "t3", "incomplete after 60s"), Path("/nonexistent"), heard)
    assert heard.lines == ["expired transfer t3: incomplete after 60s"]
