"""Audit flows back: agent records → sealed audit bundle → gateway import → verify → SIEM,
and acknowledgements prune the agent's outbox. Faults: tampering, gaps, breaks, replays."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from inner_agent.audit import AgentAudit
from relay.audit.record import compute_hash
from relay.frozen import replace
from relay.home import Home
from tests.conftest import Pair
from tests.forge import forge_audit, rehash
from tests.rsyslog_fixture import running_rsyslog


@pytest.fixture
def active(pair: Pair) -> Pair:
    """A pair where the agent applied a bundle and read a secret (and failed to read another)."""
    pair.put("db/pw", b"audit-test-value")
    pair.gateway("grant", "plant7", "db/*")
    pair.export()
    assert pair.agent("import", str(pair.out)).status == 0
    assert pair.get("db/pw").status == 0
    assert pair.get("db/none").status == 1
    return pair


def audit_export(pair: Pair, folder: str = "back") -> Path:
    result = pair.agent("audit", "export", "--to", str(pair.root / folder))
    assert result.status == 0, result.err
    return Path(result.out.strip())


def records(pair: Pair) -> list:  # type: ignore[type-arg]
    return AgentAudit(Home.open(pair.ag, "agent")).records()


def verify(pair: Pair) -> tuple[int, str]:
    """Exit status and the agents' lines (the gateway's own chain has its own tests)."""
    result = pair.gateway("audit", "verify")
    lines = result.out.splitlines(keepends=True)
    return result.status, "".join(x for x in lines if "(this gateway)" not in x)


def test_the_loop_reads_travel_back_verify_and_are_acknowledged(active: Pair) -> None:
    local = [json.loads(line) for line in active.agent("audit", "--json").out.splitlines()]
    types = [r["type"] for r in local]
    assert types == ["key.created", "key.trusted", "bundle.applied", "secret.read", "secret.denied"]
    read = local[3]
    assert read["agent"] == "plant7"
    assert read["fields"]["path"] == "db/pw"
    assert (read["path"], local[4]["path"]) == ("db/pw", "db/none")  # top level for scripts
    assert "path" not in local[2]  # only secret events carry it
    assert {"seq", "time", "type", "session_id", "hash", "prev_hash"} <= set(read)
    assert local[4]["fields"]["reason"] == "not_found"
    bundle = audit_export(active)
    assert bundle.name == "plant7-to-hq.audit.0000000001.bundle"
    imported = active.gateway("import", str(bundle))
    assert imported.status == 0, imported.err
    assert "5 new records" in imported.out
    assert verify(active) == (0, "plant7: ok, records 1-5 intact\n")
    received = [
        json.loads(x)
        for x in active.gateway("audit", "--agent", "plant7", "--json").out.splitlines()
    ]
    assert [r["seq"] for r in received] == [1, 2, 3, 4, 5]
    assert received[3]["fields"]["path"] == received[3]["path"] == "db/pw"
    status = json.loads(active.agent("status", "--json").out)
    assert status["audit_unacked"] == 6  # 5 exported + the audit.exported record itself
    active.export()  # the next forward bundle carries the acknowledgement
    active.agent("import", str(active.out))
    status = json.loads(active.agent("status", "--json").out)
    assert status["audit_acked"] == 5
    held = [r.seq for r in records(active)]
    assert held[0] == 6  # pruned up to the mark and no further
    assert status["audit_unacked"] == len(held)


def test_export_without_ack_repeats_and_the_gateway_deduplicates(active: Pair) -> None:
    first = audit_export(active, "one")
    second = audit_export(active, "two")
    assert active.gateway("import", str(first)).status == 0
    again = active.gateway("import", str(second))
    assert again.status == 0
    assert "1 new records, 5 already held" in again.out
    duplicate = active.gateway("import", str(second))
    assert "duplicate" in duplicate.out
    assert verify(active)[0] == 0


def test_tampered_audit_bundle_is_rejected_and_changes_nothing(active: Pair) -> None:
    bundle = audit_export(active)
    data = bytearray(bundle.read_bytes())
    data[-5] ^= 0x10
    bundle.write_bytes(bytes(data))
    result = active.gateway("import", str(bundle))
    assert result.status == 1
    assert ": bad_signature: " in result.err
    assert active.gateway("audit", "--json").out == ""


def test_a_deleted_middle_record_is_a_gap_until_filled(active: Pair) -> None:
    held = records(active)
    holed = [r for r in held if r.seq != 3]
    partial = active.root / "partial.bundle"
    partial.write_bytes(forge_audit(active.ag, active.gw, holed, seq=900))
    assert active.gateway("import", str(partial)).status == 0
    status, out = verify(active)
    assert status == 1
    assert "plant7: gap 3: records missing" in out
    assert active.gateway("import", str(audit_export(active))).status == 0
    assert verify(active) == (0, "plant7: ok, records 1-5 intact\n")


def test_out_of_order_bundles_are_merged_not_refused(active: Pair) -> None:
    early = audit_export(active, "early")
    active.get("db/pw")
    late = audit_export(active, "late")
    held = records(active)
    tail_only = active.root / "tail.bundle"
    tail_only.write_bytes(
        forge_audit(active.ag, active.gw, [r for r in held if r.seq > 5], seq=500)
    )
    assert active.gateway("import", str(tail_only)).status == 0
    status, out = verify(active)
    assert status == 1
    assert "gap 1-5" in out
    assert active.gateway("import", str(early)).status == 0
    assert active.gateway("import", str(late)).status == 0
    assert verify(active)[0] == 0


def test_a_truncated_tail_is_reported_missing(active: Pair) -> None:
    held = records(active)
    cut = active.root / "cut.bundle"
    cut.write_bytes(
        forge_audit(active.ag, active.gw, held[:3], seq=600, head=(held[-1].seq, held[-1].hash))
    )
    # a slice of a split export: the rest may come in another bundle, and until it does it is
    # missing, because the signed head says it exists
    assert active.gateway("import", str(cut)).status == 0
    status, out = verify(active)
    assert status == 1
    assert "gap 4-5" in out
    past = active.root / "past.bundle"
    past.write_bytes(forge_audit(active.ag, active.gw, held, seq=601, head=(3, held[2].hash)))
    rejected = active.gateway("import", str(past))
    assert rejected.status == 1
    assert ": malformed: " in rejected.err  # records past the declared head


def test_a_reordered_pair_is_a_chain_break(active: Pair) -> None:
    held = records(active)
    swapped = list(held)
    swapped[2], swapped[3] = (replace(held[3], seq=3), replace(held[2], seq=4))
    swapped = [replace(r, hash=compute_hash(r)) for r in swapped]  # hashes recompute
    bad = active.root / "swapped.bundle"
    bad.write_bytes(forge_audit(active.ag, active.gw, swapped, seq=700))
    result = active.gateway("import", str(bad))
    assert result.status == 1
    assert ": chain_broken: " in result.err
    assert "does not link" in result.err
    assert active.gateway("audit", "--json").out == ""


def test_an_edited_record_rehashed_without_the_agents_key(active: Pair) -> None:
    held = records(active)
    edited = rehash([replace(r, fields={"path": "db/other"}) if r.seq == 4 else r for r in held])
    from relay import crypto

    forged = active.root / "forged.bundle"
    forged.write_bytes(
        forge_audit(active.ag, active.gw, edited, seq=800, keys=crypto.generate_keypair())
    )
    assert ": bad_signature: " in active.gateway("import", str(forged)).err
    # an agent that rewrites history it already sent is caught against the held copy
    assert active.gateway("import", str(audit_export(active))).status == 0
    rewritten = active.root / "rewritten.bundle"
    rewritten.write_bytes(forge_audit(active.ag, active.gw, edited, seq=801))
    result = active.gateway("import", str(rewritten))
    assert result.status == 1
    assert ": chain_broken: " in result.err
    assert verify(active)[0] == 0


def test_syslog_down_then_back_loses_nothing(active: Pair) -> None:
    with running_rsyslog() as server:
        assert active.agent("config", "set", "audit.syslog", server.tcp_url).status == 0
        server.wait_for(lambda lines: sum("secret.read" in x for x in lines) >= 1)
        server.stop()
        assert active.get("db/pw").status == 0  # the read works while the SIEM is down
        server.start()
        active.get("db/pw")
        lines = server.wait_for(lambda ls: sum("secret.read" in x for x in ls) >= 3)
    reads = [line for line in lines if "secret.read" in line]
    assert len(reads) >= 3
    assert all('path="db/pw"' in line for line in reads)
    assert all("audit-test-value" not in line for line in lines)


def test_gateway_forwards_agent_records_tagged_with_the_agent(active: Pair, tmp_path: Path) -> None:
    sink = tmp_path / "siem" / "gateway.jsonl"
    assert active.gateway("config", "set", "audit.jsonl", str(sink)).status == 0
    active.gateway("import", str(audit_export(active)))
    lines = [json.loads(x) for x in sink.read_text().splitlines()]
    forwarded = [x for x in lines if x["agent"] == "plant7"]
    assert [x["seq"] for x in forwarded] == [1, 2, 3, 4, 5]
    assert any(x["agent"] == "hq" and x["type"] == "audit.imported" for x in lines)


def test_no_secret_in_records_sinks_or_audit_bundles(pair: Pair, tmp_path: Path) -> None:
    planted = f"PLANTED-{os.urandom(10).hex()}".encode()
    pair.agent("config", "set", "audit.jsonl", str(tmp_path / "agent.jsonl"))
    pair.put("db/pw", planted)
    pair.gateway("grant", "plant7", "db/*")
    pair.export()
    pair.agent("import", str(pair.out))
    assert pair.get("db/pw").stdout == planted + b"\n"
    bundle = audit_export(pair)
    pair.gateway("config", "set", "audit.jsonl", str(tmp_path / "gw.jsonl"))
    pair.gateway("import", str(bundle))
    blobs = [
        bundle.read_bytes(),
        (tmp_path / "agent.jsonl").read_bytes(),
        (tmp_path / "gw.jsonl").read_bytes(),
        pair.agent("audit", "--json").stdout,
        pair.gateway("audit", "--json").stdout,
        pair.gateway("audit", "--own").stdout,
    ]
    assert all(planted not in blob for blob in blobs)
    assert b"db/pw" in blobs[1]


def test_records_a_sink_has_not_had_are_not_pruned(active: Pair, tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the sink wants a folder")
    assert active.agent("config", "set", "audit.jsonl", str(blocked / "audit.jsonl")).status == 0
    active.gateway("import", str(audit_export(active)))
    active.export()
    imported = active.agent("import", str(active.out))
    assert "audit sink jsonl:" in imported.err  # warned, not failed
    assert imported.status == 0
    assert records(active)[0].seq == 1  # acknowledged, but the sink has not had them
    assert active.agent("config", "set", "audit.jsonl", str(tmp_path / "ok.jsonl")).status == 0
    delivered = [json.loads(x)["seq"] for x in (tmp_path / "ok.jsonl").read_text().splitlines()]
    assert delivered[:5] == [1, 2, 3, 4, 5]
