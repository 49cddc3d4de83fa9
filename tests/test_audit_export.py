"""The audit export splits a backlog larger than one bundle into bundles under the size cap,
which the gateway merges in any order."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from inner_agent.audit import AgentAudit
from inner_agent.audit_split import envelope_overhead, item_json, item_weights, split_records
from inner_agent.rawdb import raw_connection
from inner_agent.rotation_outbox import queue
from relay.audit.record import record_to_json
from relay.bundle.audit_payload import AuditPayload, payload_frame_size
from relay.bundle.rotation_items import RotationItem
from relay.errors import UsageError
from relay.home import Home
from tests.conftest import Pair
from tests.test_audit_chain import make_chain

CAP = 16 * 1024


def test_runs_fill_up_to_the_cap_and_keep_order() -> None:
    chain = make_chain(40)
    frame = payload_frame_size("plant7", 40, chain[-1].hash)
    cap = frame + 5 * len(record_to_json(chain[0])) + 10
    runs = split_records(chain, frame, cap, 1000)
    assert [r for run in runs for r in run] == chain
    assert len(runs) > 1
    for run in runs:
        payload = AuditPayload("plant7", 40, chain[-1].hash, run)
        assert len(payload.encode()) <= cap
    # a run is as long as the cap allows: one more record would not fit
    first = AuditPayload("plant7", 40, chain[-1].hash, runs[0] + (runs[1][0],))
    assert len(first.encode()) > cap


def test_runs_respect_max_entries_and_an_empty_log_gives_one_empty_run() -> None:
    chain = make_chain(10)
    assert [len(run) for run in split_records(chain, 100, 10**9, 4)] == [4, 4, 2]
    assert split_records([], 100, 1000, 4) == [()]


def test_a_record_alone_over_the_cap_is_too_large() -> None:
    chain = make_chain(2)
    with pytest.raises(UsageError) as caught:
        split_records(chain, 100, 150, 10)
    assert caught.value.code == "too_large"


def test_rotation_items_count_towards_the_cap() -> None:
    chain = make_chain(60)
    items = [
        RotationItem(f"{i:032x}", r.seq, "escrow", "db/a", version=2, base=1, value=b"v" * 300)
        for i, r in enumerate(chain)
        if r.seq % 3 == 0
    ]
    frame = payload_frame_size("plant7", 60, chain[-1].hash)
    cap = frame + 6 * len(record_to_json(chain[0])) + 3 * len(item_json(items[0]))
    runs = split_records(chain, frame, cap, 1000, item_weights(items, chain))
    assert [r for run in runs for r in run] == chain
    for run in runs:
        riding = tuple(i for i in items if run[0].seq <= i.seq <= run[-1].seq)
        assert len(AuditPayload("plant7", 60, chain[-1].hash, run, riding).encode()) <= cap
    # items count against max_entries too, and a record whose items cannot fit is too_large
    counted = split_records(chain[:10], frame, 10**9, 10, {3: (0, 8), 5: (0, 5)})
    assert [len(run) for run in counted] == [4, 6]
    with pytest.raises(UsageError):
        split_records(chain, frame, cap, 1000, {3: (cap, 1)})


def fill(home: Path, count: int) -> None:
    opened = Home.open(home, "agent")
    audit = AgentAudit(opened)
    with raw_connection(opened) as conn:
        for i in range(count):
            audit.record_on(conn, "secret.read", {"path": f"db/backlog/{i:05d}", "app": "cron"})


def test_a_backlog_larger_than_one_bundle_is_split_and_imports_in_any_order(pair: Pair) -> None:
    assert pair.agent("config", "set", "limits.max_bundle_bytes", str(CAP)).status == 0
    fill(pair.ag, 300)
    result = pair.agent("audit", "export", "--to", str(pair.root / "back"), "--json")
    assert result.status == 0, result.err
    doc = json.loads(result.out)
    paths = [Path(b["path"]) for b in doc["bundles"]]
    assert len(paths) >= 4
    assert all(p.stat().st_size <= CAP for p in paths)
    assert doc["records"] == sum(b["records"] for b in doc["bundles"]) >= 300
    assert [b["seq"] for b in doc["bundles"]] == list(range(1, len(paths) + 1))
    random.Random(7).shuffle(paths)
    for path in paths:
        imported = pair.gateway("import", str(path))
        assert imported.status == 0, imported.err
    verified = pair.gateway("audit", "verify")
    assert verified.status == 0, verified.out
    high = doc["bundles"][-1]["last_seq"]
    assert verified.out.startswith(f"plant7: ok, records 1-{high} intact\n")


def test_a_split_export_with_rotation_items_stays_under_a_small_cap(pair: Pair) -> None:
    assert pair.agent("config", "set", "limits.max_bundle_bytes", str(CAP)).status == 0
    home = Home.open(pair.ag, "agent")
    for i in range(120):
        fill(pair.ag, 2)
        detail = f"detail {i:03d} " + "x" * 180
        item = {"kind": "outcome", "path": f"db/r/{i:03d}", "version": 2, "status": "applied"}
        queue(home, "rotation.outcome", {"path": f"db/r/{i:03d}"}, {**item, "detail": detail}, 1)
    result = pair.agent("audit", "export", "--to", str(pair.root / "back"), "--json")
    assert result.status == 0, result.err
    paths = [Path(b["path"]) for b in json.loads(result.out)["bundles"]]
    assert len(paths) >= 3
    assert all(p.stat().st_size <= CAP for p in paths), [p.stat().st_size for p in paths]
    for path in reversed(paths):
        assert pair.gateway("import", str(path)).status == 0
    status = json.loads(pair.gateway("rotation", "status", "--json").out)
    assert len({row["path"] for row in status}) == 120


def test_the_payload_cap_leaves_room_for_the_envelope(pair: Pair) -> None:
    agent = Home.open(pair.ag, "agent")
    gateway = Home.open(pair.gw, "gateway").identity
    overhead = envelope_overhead(agent.identity, agent.secrets.keys, gateway)
    assert 200 < overhead < 2000
