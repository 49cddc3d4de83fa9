"""Audit sinks against a real rsyslogd, a real file, and the at-least-once cursor."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from relay.audit.chain import AuditRecord, next_record, verify_chain
from relay.audit.guard import UnsafeFieldError
from relay.audit.sinks import (
    Delivery,
    JsonlSink,
    QueuedRecord,
    SinkCursor,
    SyslogSink,
    deliver,
    deliver_all,
    memory_source,
    parse_syslog_url,
    sinks_from_settings,
)
from relay.errors import TransportError
from tests.rsyslog_fixture import RsyslogServer, free_port, running_rsyslog
from tests.test_audit_formats import NASTY, parse_cef, parse_rfc5424

T0 = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)
AGENT = "plant-7"


class Log:
    """The caller's store, in memory: appended records and one cursor per sink name."""

    def __init__(self) -> None:
        self.items: list[QueuedRecord] = []
        self.cursors: dict[str, int] = {}

    def append(self, type_: str, fields: dict[str, object]) -> AuditRecord:
        prev = self.items[-1].record if self.items else None
        n = len(self.items)
        rec = next_record(prev, "sess-1", type_, fields, T0 + timedelta(seconds=n), n)  # type: ignore[arg-type]
        self.items.append(QueuedRecord(rec.seq, AGENT, rec))
        return rec

    def load_after(self, position: int, limit: int) -> Sequence[QueuedRecord]:
        return memory_source(self.items)(position, limit)

    def cursor(self, name: str) -> SinkCursor:
        return SinkCursor(
            lambda: self.cursors.get(name, 0), lambda p: self.cursors.update({name: p})
        )

    def deliver(self, sink: JsonlSink | SyslogSink, batch_size: int = 500) -> Delivery:
        return deliver(sink, self.cursor(sink.name), self.load_after, batch_size)


@pytest.fixture
def rsyslog() -> Iterator[RsyslogServer]:
    """A real rsyslogd on loopback UDP/TCP and a unix socket, fresh for each test."""
    with running_rsyslog() as server:
        yield server


def fill(log: Log, n: int) -> None:
    for i in range(n):
        log.append("secret.read", {"path": f"db/plant7/item{i}", "app": "cron", "user": "ops"})


def seqs_in(messages: list[str]) -> list[int]:
    return [int(parse_rfc5424(m).sd["relay@32473"]["seq"]) for m in messages]


# --- syslog over a real rsyslogd ---------------------------------------------------------------


def test_rfc5424_over_tcp_arrives_and_parses_back(rsyslog: RsyslogServer) -> None:
    log = Log()
    log.append("bundle.rejected", {"reason": NASTY, "bundle_seq": 12, "path": "a|b=c"})
    fill(log, 2)
    result = log.deliver(SyslogSink(rsyslog.tcp_url, hostname="gw-1"))
    assert (result.delivered, result.position, result.error) == (3, 3, None)
    got = rsyslog.wait_for_count(3)
    first = parse_rfc5424(got[0])
    assert (first.hostname, first.app, first.msgid) == ("gw-1", "relay", "bundle.rejected")
    assert first.timestamp == "2026-11-29T10:00:00.000000Z"
    params = first.sd["relay@32473"]
    assert params["reason"] == NASTY
    assert params["path"] == "a|b=c"
    assert params["agent"] == AGENT
    assert params["hash"] == log.items[0].record.hash
    assert seqs_in(got) == [1, 2, 3]
    assert {r.input for r in rsyslog.received()} == {"imtcp"}


def test_cef_over_udp_arrives_and_parses_back(rsyslog: RsyslogServer) -> None:
    log = Log()
    log.append("secret.denied", {"reason": NASTY, "path": "db/x", "user": "a\\b"})
    assert log.deliver(SyslogSink(rsyslog.udp_url, "cef", hostname="gw")).error is None
    (raw,) = rsyslog.wait_for_count(1)
    carrier = parse_rfc5424(raw)
    header, ext = parse_cef(carrier.msg)
    assert header[:6] == ["CEF:0", "relay", "relay", header[3], "secret.denied", "secret denied"]
    assert header[6] == "6"
    assert ext["reason"] == NASTY
    assert (ext["filePath"], ext["suser"], ext["externalId"]) == ("db/x", "a\\b", "1")
    assert ext["deviceExternalId"] == AGENT


def test_rfc5424_over_unix_datagram_socket(rsyslog: RsyslogServer) -> None:
    log = Log()
    fill(log, 4)
    assert log.deliver(SyslogSink(rsyslog.unix_url)).error is None
    assert seqs_in(rsyslog.wait_for_count(4)) == [1, 2, 3, 4]
    assert {r.input for r in rsyslog.received()} == {"imuxsock"}


def test_receiver_down_then_back_catches_up_exactly(rsyslog: RsyslogServer) -> None:
    log = Log()
    sink = SyslogSink(rsyslog.tcp_url, timeout=10)  # refused at once while down
    fill(log, 5)
    assert log.deliver(sink).delivered == 5
    rsyslog.wait_for_count(5)

    rsyslog.stop()
    fill(log, 7)
    down = log.deliver(sink, batch_size=3)
    assert isinstance(down.error, TransportError)
    assert (down.delivered, down.position, log.cursors[sink.name]) == (0, 5, 5)
    with pytest.raises(TransportError):
        sink.send(log.items[:1])

    rsyslog.start()
    back = log.deliver(sink, batch_size=3)
    assert (back.delivered, back.position, back.error) == (7, 12, None)
    # Wait for the distinct sequence numbers, not a number of lines (a repeat would pass a
    # count while a record is still missing), then for one more record sent after them on the
    # same ordered stream: once seq 13 is in, nothing earlier is still on its way.
    rsyslog.wait_for(lambda lines: set(seqs_in(lines)) >= set(range(1, 13)))
    assert log.deliver(sink).delivered == 0
    fill(log, 1)
    assert log.deliver(sink).delivered == 1
    got = seqs_in(rsyslog.wait_for(lambda lines: 13 in seqs_in(lines)))
    assert sorted(set(got)) == list(range(1, 14))  # nothing lost
    assert sorted(got) == list(range(1, 14))  # and here, where no batch was cut, nothing twice


def test_unix_socket_missing_is_a_transport_error(tmp_path: Path) -> None:
    with pytest.raises(TransportError):
        SyslogSink(f"unix://{tmp_path}/nothing.sock").send(_one())


def test_tcp_refused_is_a_transport_error() -> None:
    port = free_port(socket.SOCK_STREAM)
    with pytest.raises(TransportError, match=r"syslog tcp://127\.0\.0\.1"):
        SyslogSink(f"tcp://127.0.0.1:{port}", timeout=1).send(_one())


def _one() -> list[QueuedRecord]:
    log = Log()
    fill(log, 1)
    return log.items


# --- JSON lines file ---------------------------------------------------------------------------


def test_jsonl_appends_private_file_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path)
    log = Log()
    fill(log, 3)
    assert log.deliver(sink).delivered == 3
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fill(log, 2)
    assert log.deliver(sink).delivered == 2
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]
    assert lines[0]["agent"] == AGENT
    assert lines[0]["fields"]["path"] == "db/plant7/item0"
    assert verify_chain(log.items[i].record for i in range(5)).ok


def test_jsonl_creates_a_missing_folder_privately(tmp_path: Path) -> None:
    log = Log()
    fill(log, 2)
    sink = JsonlSink(tmp_path / "missing-dir" / "audit.jsonl")
    assert log.deliver(sink).error is None
    assert (tmp_path / "missing-dir").stat().st_mode & 0o777 == 0o700
    assert len(sink.path.read_text().splitlines()) == 2


def test_jsonl_unwritable_is_a_transport_error(tmp_path: Path) -> None:
    log = Log()
    fill(log, 2)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    sink = JsonlSink(blocker / "audit.jsonl")
    result = log.deliver(sink)
    assert isinstance(result.error, TransportError)
    assert log.cursors.get(sink.name, 0) == 0


def test_jsonl_does_not_follow_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "audit.jsonl").symlink_to(target)
    with pytest.raises(TransportError):
        JsonlSink(tmp_path / "audit.jsonl").send(_one())
    assert target.read_text() == ""


# --- the cursor logic -------------------------------------------------------------------------


class FlakySink:
    """Fails on chosen calls; records what it accepted."""

    name = "flaky"

    def __init__(self, fail_on: set[int]) -> None:
        self.calls = 0
        self.fail_on = fail_on
        self.got: list[int] = []

    def send(self, items: Sequence[QueuedRecord]) -> None:
        self.calls += 1
        if self.calls in self.fail_on:
            raise TransportError("down")
        self.got.extend(i.record.seq for i in items)


def test_cursor_moves_only_after_a_confirmed_batch() -> None:
    log = Log()
    fill(log, 10)
    sink = FlakySink(fail_on={2})
    first = deliver(sink, log.cursor("flaky"), log.load_after, batch_size=4)
    assert (first.delivered, first.position) == (4, 4)
    assert first.error is not None
    second = deliver(sink, log.cursor("flaky"), log.load_after, batch_size=4)
    assert (second.delivered, second.position, second.error) == (6, 10, None)
    assert sink.got == list(range(1, 11))


def test_gateway_positions_forward_records_that_fill_a_gap_late() -> None:
    """On the gateway the position is arrival order: seq 3 arriving last is still forwarded."""
    records = [item.record for item in _chain(4)]
    arrivals = [records[0], records[1], records[3], records[2]]
    items = [QueuedRecord(pos, AGENT, rec) for pos, rec in enumerate(arrivals, start=1)]
    sink = FlakySink(set())
    cursors: dict[str, int] = {}
    cursor = SinkCursor(lambda: cursors.get("f", 0), lambda p: cursors.update(f=p))
    deliver(sink, cursor, memory_source(items[:3]))
    deliver(sink, cursor, memory_source(items))
    assert sorted(sink.got) == [1, 2, 3, 4]


def _chain(n: int) -> list[QueuedRecord]:
    log = Log()
    fill(log, n)
    return log.items


def test_deliver_refuses_a_bad_source() -> None:
    items = _chain(3)
    cursor = SinkCursor(lambda: 2, lambda p: None)
    with pytest.raises(ValueError, match="ascending"):
        deliver(FlakySink(set()), cursor, lambda pos, limit: items)


def test_deliver_all_keeps_going_past_a_dead_sink(tmp_path: Path) -> None:
    log = Log()
    fill(log, 2)
    sinks = [FlakySink({1}), JsonlSink(tmp_path / "a.jsonl")]
    results = deliver_all(sinks, log.cursor, log.load_after)  # type: ignore[arg-type]
    assert [r.delivered for r in results] == [0, 2]


# --- secrets never reach a sink ----------------------------------------------------------------


PLANT = "PLANTED-s3cr3t-7f1e9a"


def test_planted_secret_never_reaches_any_sink(rsyslog: RsyslogServer, tmp_path: Path) -> None:
    """The lead's code passes metadata; a slip that passes the value is refused before any sink."""
    log = Log()
    secret_row = {"path": "db/plant7/password", "value": PLANT, "version": 3}
    attempts = [
        {"path": secret_row["path"], "app": "cron", "user": "ops"},  # the intended call
        dict(secret_row),  # the slip: the whole row
        {"path": secret_row["path"], "password": PLANT},
        {"path": secret_row["path"], "api_token": PLANT},
        {"path": secret_row["path"], "secret_hash": PLANT},
    ]
    refused = 0
    for fields in attempts:
        try:
            log.append("secret.read", fields)
        except UnsafeFieldError as exc:
            assert PLANT not in str(exc)
            refused += 1
    assert (refused, len(log.items)) == (4, 1)
    sinks = [
        JsonlSink(tmp_path / "audit.jsonl"),
        SyslogSink(rsyslog.tcp_url),
        SyslogSink(rsyslog.udp_url, "cef"),
    ]
    assert all(r.error is None for r in deliver_all(sinks, log.cursor, log.load_after))
    rsyslog.wait_for_count(2)
    received = "\n".join(rsyslog.messages())
    jsonl = (tmp_path / "audit.jsonl").read_text()
    assert "db/plant7/password" in received
    assert "db/plant7/password" in jsonl
    for output in (received, jsonl, rsyslog.output.read_text()):
        assert PLANT not in output


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["udp://127.0.0.1:514", "tcp://siem.example:6514", "unix:///dev/log", "tcp://[::1]:514"]
)
def test_syslog_urls_accepted(url: str) -> None:
    parse_syslog_url(url)


@pytest.mark.parametrize(
    "url",
    ["http://x:1", "udp://x", "tcp://x:0", "tcp://x:70000", "unix://dev/log", "x:514", "tcp://:5"],
)
def test_syslog_urls_refused(url: str) -> None:
    with pytest.raises(ValueError):
        parse_syslog_url(url)


def test_sinks_from_settings(tmp_path: Path) -> None:
    assert sinks_from_settings("", "") == []
    sinks = sinks_from_settings(str(tmp_path / "a.jsonl"), "udp://127.0.0.1:514", "cef")
    assert [s.name for s in sinks] == [
        f"jsonl:{tmp_path / 'a.jsonl'}",
        "syslog:udp://127.0.0.1:514",
    ]
    with pytest.raises(ValueError):
        SyslogSink("udp://127.0.0.1:514", "leef")


def test_pid_in_procid() -> None:
    sink = SyslogSink("udp://127.0.0.1:514", hostname="h")
    assert parse_rfc5424(sink.format(_one()[0]).decode()).procid == str(os.getpid())
