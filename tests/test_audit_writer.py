"""The agent service's audit-writing thread: ``inner_agent.audit_writer`` over a real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inner_agent import audit_writer
from inner_agent.audit import AgentAudit
from inner_agent.audit_writer import AuditWriter
from relay.audit.chain import verify_chain
from relay.home import Home
from tests.agent_home import init_agent_home
from tests.conftest import run_relay


def writer_for(tmp_path: Path, **settings: str) -> tuple[Home, AuditWriter]:
    home = init_agent_home(tmp_path)
    for key, value in settings.items():
        assert run_relay("agent", "config", "set", "--home", str(home.path), key, value).status == 0
    home = Home.open(home.path, "agent")
    return home, AuditWriter(home)


def test_queued_events_are_chained_in_order_and_reach_the_sink(tmp_path: Path) -> None:
    sink = tmp_path / "audit.jsonl"
    home, writer = writer_for(tmp_path, **{"audit.jsonl": str(sink)})
    before = len(AgentAudit(home).records())
    writer.start()
    for n in range(1200):  # more than one batch
        writer.sink("secret.read", {"path": f"db/{n}", "app": "web"})
    writer.stop(timeout=60)
    records = AgentAudit(home).records()
    written = [r for r in records if r.type == "secret.read"]
    assert [r.fields["path"] for r in written] == [f"db/{n}" for n in range(1200)]
    assert len(records) == before + 1200
    assert verify_chain(records).ok
    lines = [json.loads(line) for line in sink.read_text().splitlines()]
    assert [doc["seq"] for doc in lines] == [r.seq for r in records]


def test_each_committed_batch_is_told_with_its_count(tmp_path: Path) -> None:
    home = init_agent_home(tmp_path)
    told: list[int] = []
    writer = AuditWriter(home, told.append)
    writer.start()
    for n in range(3):
        writer.sink("secret.read", {"path": f"db/{n}"})
    writer.sink("Not A Type", {})  # refused: not counted
    writer.stop(timeout=60)
    assert sum(told) == 3
    assert all(count > 0 for count in told)


def test_an_acknowledgement_prunes_what_the_gateway_holds_in_queue_order(tmp_path: Path) -> None:
    home, writer = writer_for(tmp_path)
    audit = AgentAudit(home)
    base = audit.records()[-1].seq
    writer.start()
    for n in range(3):
        writer.sink("secret.read", {"path": f"db/{n}"})
    writer.acknowledge(base + 3)  # the gateway holds everything up to db/2
    writer.sink("secret.read", {"path": "db/after"})
    writer.stop(timeout=60)
    records = audit.records()
    assert [r.fields["path"] for r in records] == ["db/after"]  # pruned through db/2 only
    assert audit.acknowledged() == base + 3
    assert audit.unacked() == 1


def test_a_refused_record_is_logged_and_the_rest_of_its_batch_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home, writer = writer_for(tmp_path)
    writer.start()
    writer.sink("secret.read", {"path": "db/a"})
    writer.sink("Not A Type", {"path": "db/b"})  # the chain refuses it
    writer.sink("secret.read", {"path": "db/c"})
    writer.stop(timeout=60)
    paths = [r.fields.get("path") for r in AgentAudit(home).records() if r.type == "secret.read"]
    assert paths == ["db/a", "db/c"]
    assert "audit record Not A Type refused" in caplog.text


def test_a_failed_write_is_said_loudly_and_the_thread_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, writer = writer_for(tmp_path)
    calls: list[int] = []
    real = audit_writer._append_all

    def fail_once(execute: object, records: list[tuple[str, object]]) -> int:
        calls.append(len(records))
        if len(calls) == 1:
            raise OSError("disk full")
        return real(execute, records)

    monkeypatch.setattr(audit_writer, "_append_all", fail_once)
    writer.start()
    writer.sink("secret.read", {"path": "db/lost"})
    writer.stop(timeout=60)
    assert "audit write failed (OSError): 1 events" in caplog.text
    writer2 = AuditWriter(home)
    writer2.start()
    writer2.sink("secret.read", {"path": "db/kept"})
    writer2.stop(timeout=60)
    assert [r.fields["path"] for r in AgentAudit(home).records() if r.type == "secret.read"] == [
        "db/kept"
    ]
