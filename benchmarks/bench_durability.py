"""The price of durable commits: ``synchronous = FULL`` (what the stores use) next to ``NORMAL``
(what they used before), in WAL mode on the real SQLCipher files.

Median milliseconds per operation:

- gateway: reserve one seq (the commit a bundle's seq depends on);
- gateway: export one bundle of 5,000 secrets (read, seal, commit seq + audit, write the file);
- agent: apply a 5,000-secret bundle that changes 1% (verify, decrypt, write, commit);
- agent: append one audit record in its own transaction (what ``relay agent get`` does).

Run: ``python -m benchmarks durability`` (or ``make bench``). The figures depend on the disk's
fsync latency far more than on the CPU: a laptop SSD, a VM disk and tmpfs differ by 100x.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from inner_agent.audit import AgentAudit
from inner_agent.importer import AgentImporter
from inner_agent.store import AgentStore
from outer_gateway.export import build_bundle
from outer_gateway.store import GatewayStore
from relay import db
from relay.home import Home
from relay.transport.folder import write_atomic

SECRETS = 5_000
SEQS = 200
BUNDLES = 9
APPENDS = 200
MODES = ("NORMAL", "FULL")


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _measure(root: Path) -> dict[str, float]:
    gw_home = Home.create(root / "gw", "gateway", "hq")
    ag_home = Home.create(root / "ag", "agent", "plant7")
    gw, ag = GatewayStore.open(gw_home), AgentStore.open(ag_home)
    try:
        gw.enroll(ag_home.identity, 0)
        ag.trust(gw_home.identity, 0)
        now = int(time.time())
        gw.import_secrets({f"app/s{i}/pw": b"%032d" % i for i in range(SECRETS)}, None, now)
        gw.grant("plant7", "**")
        seqs = [_timed(lambda: gw.next_seq("plant7", now)) for _ in range(SEQS)]
        importer = AgentImporter(ag_home, ag, lambda: int(time.time()))
        exports, applies = [], []
        for round_ in range(BUNDLES):
            changed = {
                f"app/s{(round_ * 50 + i) % SECRETS}/pw": b"round%d" % round_ for i in range(50)
            }
            gw.import_secrets(changed, None, now)
            agent = gw.agent("plant7")
            holder: list[object] = []

            def export() -> None:
                bundle = build_bundle(gw_home, gw, agent, int(time.time()), 3600)  # noqa: B023
                write_atomic(root / "out", bundle.name, bundle.data)
                holder.append(bundle)  # noqa: B023

            exports.append(_timed(export))
            bundle = holder[0]
            applies.append(
                _timed(lambda: importer.import_bytes(bundle.name, bundle.data))  # type: ignore[attr-defined]  # noqa: B023
            )
        audit = AgentAudit(ag_home)
        appends = [
            _timed(lambda: audit.record("secret.read", path=f"app/s{i}/pw"))  # noqa: B023
            for i in range(APPENDS)
        ]
    finally:
        gw.close()
        ag.close()
    return {
        "gateway: reserve one seq": _median_ms(seqs),
        f"gateway: export one bundle ({SECRETS:,} secrets)": _median_ms(exports),
        f"agent: apply one bundle ({SECRETS:,} secrets, 1% changed)": _median_ms(applies),
        "agent: append one audit record (get path)": _median_ms(appends),
    }


def main() -> None:
    results: dict[str, dict[str, float]] = {}
    saved = db.SYNCHRONOUS
    try:
        for mode in MODES:
            db.SYNCHRONOUS = mode
            with tempfile.TemporaryDirectory() as tmp:
                results[mode] = _measure(Path(tmp))
    finally:
        db.SYNCHRONOUS = saved
    print(f"{'median ms per operation':<58} {'NORMAL':>9} {'FULL':>9} {'FULL/NORMAL':>12}")
    for label in results["FULL"]:
        normal, full = results["NORMAL"][label], results["FULL"][label]
        print(f"{label:<58} {normal:>9.2f} {full:>9.2f} {full / normal:>11.1f}x")


if __name__ == "__main__":
    main()
