"""What the kill harness found, each pinned at its named kill point (``RELAY_CRASH_AT``: the real
process SIGKILLs itself at that stage), plus the durability settings power loss depends on."""

from __future__ import annotations

import os
import signal
import time

import pytest

from inner_agent.audit import AgentAudit
from inner_agent.rawdb import raw_connection
from inner_agent.store import AgentStore
from outer_gateway.audit import GatewayAudit
from outer_gateway.store import GatewayStore
from relay.audit.chain import AuditRecord, verify_chain
from relay.bundle.envelope import parse_envelope
from relay.home import Home
from relay.transport.folder import STALE_TEMP_SECONDS
from tests.conftest import Pair, Result, run_process

pytestmark = pytest.mark.slow  # real processes

KILLED = -signal.SIGKILL


def crash(stage: str, *args: str) -> Result:
    """Run ``relay ARGS`` as a process that SIGKILLs itself at ``stage``; it must die there."""
    result = run_process(*args, env={"RELAY_CRASH_AT": stage})
    assert result.status == KILLED, (stage, result.status, result.err)
    return result


def export_args(pair: Pair) -> tuple[str, ...]:
    return ("gateway", "export", "--home", str(pair.gw), "--to", str(pair.out))


def gateway_records(pair: Pair) -> list[AuditRecord]:
    home = Home.open(pair.gw, "gateway")
    store = GatewayStore.open(home)
    try:
        records = GatewayAudit(home, store.engine).own_records()
    finally:
        store.close()
    assert verify_chain(records).ok
    return [r for r in records if r.type == "bundle.exported"]


def agent_applied(pair: Pair) -> list[AuditRecord]:
    records = AgentAudit(Home.open(pair.ag, "agent")).records()
    assert verify_chain(records).ok
    return [r for r in records if r.type == "bundle.applied"]


def agent_values(pair: Pair) -> dict[str, bytes]:
    store = AgentStore.open(Home.open(pair.ag, "agent"))
    try:
        return dict(store.iter_values())
    finally:
        store.close()


def granted(pair: Pair, values: dict[str, bytes]) -> None:
    for path, value in values.items():
        pair.put(path, value)
    assert pair.gateway("grant", "plant7", "**").status == 0


# -- the agent -------------------------------------------------------------------------------


def test_applied_bundle_without_audit_record_after_kill(pair: Pair) -> None:
    """Bug: the bundle was committed, then ``bundle.applied`` written in a second transaction; a
    kill in between left an applied bundle that the audit never mentions (the restart only saw a
    duplicate). Now the record commits with the bundle."""
    granted(pair, {"db/pw": b"v1"})
    (bundle,) = pair.export()
    crash("apply.committed", "agent", "import", "--home", str(pair.ag), str(bundle))
    assert agent_values(pair) == {"db/pw": b"v1"}
    records = agent_applied(pair)
    assert [r.fields["bundle_hash"] for r in records] == [
        parse_envelope(bundle.read_bytes()).bundle_id
    ]
    again = run_process("agent", "import", "--home", str(pair.ag), str(bundle))
    assert again.status == 0, again.err
    assert len(agent_applied(pair)) == 1  # the restart finds a duplicate, never a second apply


def test_half_applied_store_after_kill_before_commit(pair: Pair) -> None:
    """A kill after the rows are written but before the commit leaves the old state, with no
    high-water mark and no record; the restart applies the bundle once."""
    granted(pair, {"db/a": b"1", "db/b": b"2"})
    (first,) = pair.export()
    assert pair.agent("import", str(first)).status == 0
    pair.put("db/a", b"changed")
    assert pair.gateway("secret", "rm", "db/b").status == 0
    (second,) = pair.export()
    crash("apply.written", "agent", "import", "--home", str(pair.ag), str(second))
    assert agent_values(pair) == {"db/a": b"1", "db/b": b"2"}
    assert len(agent_applied(pair)) == 1
    assert run_process("agent", "import", "--home", str(pair.ag), str(second)).status == 0
    assert agent_values(pair) == {"db/a": b"changed"}
    assert len(agent_applied(pair)) == 2


# -- the gateway -----------------------------------------------------------------------------


def test_exported_bundle_without_audit_record_after_kill(pair: Pair) -> None:
    """Bug: the bundle file was written, then ``bundle.exported`` recorded; a kill in between
    left a bundle on the medium that the gateway's audit never mentions. Now the record (with
    the bundle's hash) commits with the seq, before the file is written."""
    granted(pair, {"db/pw": b"v1"})
    crash("export.written", *export_args(pair))
    (bundle,) = pair.out.glob("*.bundle")
    envelope = parse_envelope(bundle.read_bytes())
    (record,) = gateway_records(pair)
    assert record.fields["bundle_seq"] == envelope.header.seq == 1
    assert record.fields["bundle_hash"] == envelope.bundle_id


def test_seq_committed_then_killed_is_never_reused(pair: Pair) -> None:
    """A kill after the seq commit but before the file: the seq is spent (recorded, never
    written), and the next export takes the next one, so no seq names two bundles."""
    granted(pair, {"db/pw": b"v1"})
    crash("export.committed", *export_args(pair))
    assert not list(pair.out.glob("*.bundle")) if pair.out.exists() else True
    (bundle,) = pair.export()
    assert parse_envelope(bundle.read_bytes()).header.seq == 2
    assert [r.fields["bundle_seq"] for r in gateway_records(pair)] == [1, 2]
    assert pair.agent("import", str(bundle)).status == 0  # a gap in seqs is accepted


def test_killed_before_the_seq_commit_spends_nothing(pair: Pair) -> None:
    """A kill while the sealed bundle's transaction is open rolls everything back."""
    granted(pair, {"db/pw": b"v1"})
    crash("export.sealed", *export_args(pair))
    assert gateway_records(pair) == []
    (bundle,) = pair.export()
    assert parse_envelope(bundle.read_bytes()).header.seq == 1


def test_temp_file_left_by_killed_write_is_hidden_then_swept(pair: Pair) -> None:
    """A kill between the temp file's fsync and the rename leaves a hidden temp file: no reader
    takes it for a bundle, and a later write removes it once it is stale."""
    granted(pair, {"db/pw": b"v1"})
    crash("write.synced", *export_args(pair))
    (temp,) = pair.out.iterdir()
    assert temp.name.startswith(".") and temp.name.endswith(".tmp")
    imported = run_process("agent", "import", "--home", str(pair.ag), str(pair.out), "--json")
    assert imported.status == 0 and imported.out.strip() in ("[]", "")
    pair.export()
    assert temp.exists()  # a fresh temp file may be a concurrent writer's: left alone
    old = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(temp, (old, old))
    pair.export()
    assert not temp.exists()
    assert all(not p.name.startswith(".") for p in pair.out.iterdir())


# -- durability ------------------------------------------------------------------------------

FULL = 2


def test_synchronous_full_on_every_store_connection(pair: Pair) -> None:
    """Power loss keeps what was committed only with ``synchronous = FULL``: read it back on
    the real SQLCipher connections (the gateway's, the agent's engine and its raw get path)."""
    gateway = GatewayStore.open(Home.open(pair.gw, "gateway"))
    agent_home = Home.open(pair.ag, "agent")
    agent = AgentStore.open(agent_home)
    try:
        for engine in (gateway.engine, agent.engine):
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == FULL
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        gateway.close()
        agent.close()
    with raw_connection(agent_home) as conn:
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == FULL
