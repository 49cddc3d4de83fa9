"""Audit chain throughput: append (hash) and verify 100,000 records, next to raw SHA-256.

Run: ``python benchmarks/bench_audit.py``. The raw line hashes the very bytes the chain hashes
(the canonical JSON of each record), so it is the ceiling; the gap to it is JSON encoding and
Python object work.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from relay.audit.chain import (
    AuditRecord,
    next_record,
    record_from_json,
    record_to_json,
    verify_chain,
)
from relay.audit.formats import format_cef, format_rfc5424
from relay.audit.record import hash_body

N = 100_000
T0 = datetime(2026, 11, 29, tzinfo=UTC)


def build(n: int) -> list[AuditRecord]:
    """``n`` chained ``secret.read`` records with typical fields."""
    records: list[AuditRecord] = []
    prev = None
    for i in range(n):
        fields = {"path": f"db/plant7/item{i}", "app": "cron", "user": "ops", "bundle_seq": i}
        prev = next_record(prev, "sess-1", "secret.read", fields, T0 + timedelta(microseconds=i), i)
        records.append(prev)
    return records


def timed(label: str, n: int, work: Callable[[], object]) -> float:
    """Run ``work`` once and print records per second."""
    start = time.perf_counter()
    work()
    elapsed = time.perf_counter() - start
    print(f"{label:<44} {n / elapsed:>12,.0f} records/s  ({elapsed:.3f} s for {n:,})")
    return elapsed


def main() -> None:
    records: list[AuditRecord] = []
    timed("append (next_record: guard + JSON + SHA-256)", N, lambda: records.extend(build(N)))
    bodies = [hash_body(r) for r in records]
    timed("raw hashlib.sha256 over the same bytes", N, lambda: [hashlib.sha256(b) for b in bodies])
    timed("canonical encoding only (hash_body)", N, lambda: [hash_body(r) for r in records])
    report = verify_chain(records)
    assert report.ok and report.contiguous_high == N
    timed("verify_chain (in order)", N, lambda: verify_chain(records))
    shuffled = records[::2] + records[1::2]
    timed("verify_chain (interleaved order)", N, lambda: verify_chain(shuffled))
    lines = [record_to_json(r) for r in records]
    timed("record_from_json (strict parse)", N, lambda: [record_from_json(x) for x in lines])
    timed("format_rfc5424", N, lambda: [format_rfc5424("a", r, hostname="h") for r in records])
    timed("format_cef", N, lambda: [format_cef("a", r) for r in records])


if __name__ == "__main__":
    main()
