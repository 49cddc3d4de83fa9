"""Audit through the stores: records/s appended to an agent's chain (one transaction each, as
``relay agent get`` does), and gateway import + verify of 100,000 records, next to the raw limit
(SHA-256 over the same bytes, one SQLCipher transaction inserting the same rows).

Run: ``python benchmarks/bench_audit_store.py`` (or ``make bench``).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

from benchmarks.bench_audit import build
from inner_agent.audit import AgentAudit
from inner_agent.rawdb import raw_connection
from inner_agent.store import AgentStore
from outer_gateway.audit import GatewayAudit
from outer_gateway.audit_import import AuditImporter, verify_agents
from outer_gateway.store import GatewayStore
from relay.audit.record import record_to_json
from relay.bundle.audit_payload import AuditPayload
from relay.bundle.seal import seal_bundle
from relay.home import Home

APPENDS = 2_000
RECORDS = 100_000


def _pair(root: Path) -> tuple[Home, Home]:
    gw = Home.create(root / "gw", "gateway", "hq")
    ag = Home.create(root / "ag", "agent", "plant7")
    store = GatewayStore.open(gw)
    store.enroll(ag.identity, 0)
    store.close()
    agent_store = AgentStore.open(ag)
    agent_store.trust(gw.identity, 0)
    agent_store.close()
    return gw, ag


def _row(label: str, count: int, seconds: float, unit: str = "records") -> None:
    print(f"{label:<52} {count / seconds:>12,.0f} {unit}/s  ({seconds:.3f} s for {count:,})")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        gw, ag = _pair(Path(tmp))
        audit = AgentAudit(ag)
        start = time.perf_counter()
        for i in range(APPENDS):
            audit.record("secret.read", path=f"db/x{i}", user="ops")
        _row(
            "agent: append to the chain in the store (1 tx each)",
            APPENDS,
            time.perf_counter() - start,
        )
        with raw_connection(ag) as conn:
            start = time.perf_counter()
            for i in range(APPENDS):
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (f"k{i}", "v"))
                conn.execute("COMMIT")
            _row(
                "raw limit: one SQLCipher insert per transaction",
                APPENDS,
                time.perf_counter() - start,
            )

        records = build(RECORDS)
        payload = AuditPayload("plant7", records[-1].seq, records[-1].hash, tuple(records))
        data = seal_bundle(
            kind="audit",
            sender=ag.identity,
            keys=ag.secrets.keys,
            recipient=gw.identity,
            seq=1,
            created=int(time.time()),
            expires=int(time.time()) + 3600,
            plaintext=payload.encode(),
        )
        print(f"audit bundle of {RECORDS:,} records: {len(data) / 1e6:.1f} MB")
        store = GatewayStore.open(gw)
        gateway_audit = GatewayAudit(gw, store.engine)
        importer = AuditImporter(gw, store, gateway_audit, lambda: int(time.time()))
        start = time.perf_counter()
        outcome = importer.import_bytes("bench.bundle", data)
        _row(
            "gateway: import (verify, decrypt, check, store)", RECORDS, time.perf_counter() - start
        )
        assert outcome.status == "imported", outcome
        start = time.perf_counter()
        chains = verify_agents(gateway_audit, ["plant7"])
        _row(
            "gateway: audit verify (re-hash the whole chain)", RECORDS, time.perf_counter() - start
        )
        assert chains[0].ok
        store.close()

        lines = [record_to_json(r).encode() for r in records]
        start = time.perf_counter()
        for line in lines:
            hashlib.sha256(line).digest()
        _row("raw limit: SHA-256 of the same records", RECORDS, time.perf_counter() - start)
        with raw_connection(ag) as conn:
            conn.execute("CREATE TABLE bench (agent TEXT, seq INTEGER, record TEXT)")
            start = time.perf_counter()
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO bench VALUES ('plant7', ?, ?)",
                [(i, line.decode()) for i, line in enumerate(lines)],
            )
            conn.execute("COMMIT")
            _row(
                "raw limit: one SQLCipher transaction of the same rows",
                RECORDS,
                time.perf_counter() - start,
            )


if __name__ == "__main__":
    main()
