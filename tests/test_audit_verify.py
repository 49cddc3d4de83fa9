"""``relay gateway audit verify`` says when audit is missing, not only when it is altered: a
silent agent, a head that goes backwards, and the gateway's own chain."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from inner_agent.audit import AgentAudit
from outer_gateway.audit_verify import HeadBackwards, heads_going_backwards, silence
from outer_gateway.store import GatewayStore
from relay.audit.chain import AuditRecord
from relay.db import sa_executor, write_transaction
from relay.home import Home
from tests.conftest import Pair
from tests.forge import forge_audit

DAY = 86400


def test_heads_going_backwards_are_judged_by_bundle_seq_not_arrival() -> None:
    assert heads_going_backwards([(3, 9), (1, 4), (2, 9), (4, 12)]) == []
    assert heads_going_backwards([(5, 3), (4, 7), (6, 7)]) == [HeadBackwards(5, 3, 4, 7)]
    found = heads_going_backwards([(1, 10), (2, 4), (3, 8), (4, 11)])
    assert found == [HeadBackwards(2, 4, 1, 10), HeadBackwards(3, 8, 1, 10)]


def test_silence_counts_only_past_the_limit() -> None:
    assert silence(last_heard=1000, now=1000 + DAY, max_silence=DAY) is None
    assert silence(last_heard=1000, now=1001 + DAY, max_silence=DAY) == DAY + 1


@contextmanager
def gateway_sql(pair: Pair) -> Iterator[Any]:
    store = GatewayStore.open(Home.open(pair.gw, "gateway"))
    with write_transaction(store.engine) as conn:
        yield sa_executor(conn)


def agent_records(pair: Pair, extra: int = 4) -> list[AuditRecord]:
    audit = AgentAudit(Home.open(pair.ag, "agent"))
    for i in range(extra):
        audit.record("secret.read", path=f"db/x{i}", app="cron")
    return audit.records()


def send(pair: Pair, records: list[AuditRecord], seq: int, head: AuditRecord) -> None:
    path = pair.root / f"forged-{seq}.bundle"
    path.write_bytes(forge_audit(pair.ag, pair.gw, records, seq=seq, head=(head.seq, head.hash)))
    result = pair.gateway("import", str(path))
    assert result.status == 0, result.err


def test_an_agent_silent_longer_than_max_silence_fails_verify(pair: Pair) -> None:
    assert pair.gateway("audit", "verify").status == 0  # enrolled just now: not silent yet
    with gateway_sql(pair) as execute:
        execute("UPDATE agents SET enrolled_at = enrolled_at - ?", (3 * DAY,))
    result = pair.gateway("audit", "verify")
    assert result.status == 1
    assert "plant7: silent for 3d: no audit bundle imported (audit.max_silence 2d)" in result.out
    doc = json.loads(pair.gateway("audit", "verify", "--json").out)
    assert doc["ok"] is False
    assert doc["agents"][0]["silent_for"] >= 3 * DAY
    assert pair.gateway("config", "set", "audit.max_silence", "4d").status == 0
    assert pair.gateway("audit", "verify").status == 0
    assert pair.gateway("config", "set", "audit.max_silence", "1d").status == 0
    assert pair.gateway("audit", "verify").status == 1
    records = agent_records(pair, 0)
    send(pair, records, 1, records[-1])  # heard from now
    assert pair.gateway("audit", "verify").status == 0


def test_a_head_that_goes_backwards_fails_verify_in_any_arrival_order(pair: Pair) -> None:
    records = agent_records(pair)
    assert len(records) == 6
    send(pair, records[:3], 11, records[2])  # written later, arrives first: head 3
    send(pair, records, 10, records[-1])  # written earlier: head 6
    result = pair.gateway("audit", "verify")
    assert result.status == 1
    assert "plant7: head went backwards: bundle 11 has head 3, bundle 10 had head 6" in result.out
    assert "plant7: ok" not in result.out
    doc = json.loads(pair.gateway("audit", "verify", "--json").out)
    assert doc["agents"][0]["head_backwards"] == [
        {"seq": 11, "head": 3, "earlier_seq": 10, "earlier_head": 6}
    ]


def test_a_head_that_only_grows_passes_whatever_the_arrival_order(pair: Pair) -> None:
    records = agent_records(pair)
    send(pair, records, 21, records[-1])
    send(pair, records[:3], 20, records[2])
    result = pair.gateway("audit", "verify")
    assert result.status == 0, result.out


def test_the_gateways_own_chain_is_verified(pair: Pair) -> None:
    pair.put("db/pw", b"own-chain-value")
    ok = pair.gateway("audit", "verify")
    assert ok.status == 0
    assert "hq (this gateway): ok, own records 1-" in ok.out
    with gateway_sql(pair) as execute:
        (row,) = execute("SELECT record FROM audit_log WHERE seq = 2", ())
        doc = json.loads(row[0])
        doc["type"] = "secret.removed"
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        execute("UPDATE audit_log SET record = ? WHERE seq = 2", (text,))
    result = pair.gateway("audit", "verify")
    assert result.status == 1
    assert "hq (this gateway): break at 2: hash_mismatch" in result.out
    doc = json.loads(pair.gateway("audit", "verify", "--json").out)
    assert doc["gateway"]["ok"] is False
    assert doc["gateway"]["breaks"][0]["kind"] == "hash_mismatch"
    assert pair.gateway("audit", "verify", "--agent", "plant7").status == 0  # agents only


@pytest.mark.parametrize("value", ["0s", "soon", "1y"])
def test_max_silence_must_be_a_duration(pair: Pair, value: str) -> None:
    result = pair.gateway("config", "set", "audit.max_silence", value)
    assert result.status == 2
    assert result.err.startswith("relay: error: bad_duration: ")
