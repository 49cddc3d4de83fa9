"""Profile the bulk paths at one size: ``python -m benchmarks.profile_paths [N] [TOP]``.

Not a benchmark (the runner only picks ``bench_*``): prints cProfile's top functions by
cumulative and internal time for the gateway import, the export, the agent import and the agent's
1% re-import, so that a change can be aimed at what dominates.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from benchmarks.bench_bundle import change_one_percent, make_values, no_passphrase

T = TypeVar("T")


def profiled(label: str, func: Callable[[], T], top: int) -> T:
    profile = cProfile.Profile()
    started = time.perf_counter()
    result = profile.runcall(func)
    print(f"\n##### {label}: {time.perf_counter() - started:.3f} s (under the profiler)")
    stats = pstats.Stats(profile, stream=sys.stdout)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return result


def main(argv: list[str]) -> None:
    from inner_agent.importer import AgentImporter
    from inner_agent.store import AgentStore
    from outer_gateway.export import build_bundle
    from outer_gateway.store import GatewayStore
    from relay.home import Home

    n = int(argv[0]) if argv else 100_000
    top = int(argv[1]) if len(argv) > 1 else 25
    now = int(time.time())
    values = make_values(n, seed=n)
    changed = change_one_percent(values, seed=n + 1)
    with no_passphrase(), tempfile.TemporaryDirectory(prefix="relay-prof-") as tmp:
        folder = Path(tmp)
        gw_home = Home.create(folder / "gateway", "gateway", "gw")
        gw = GatewayStore.open(gw_home)
        ag_home = Home.create(folder / "agent", "agent", "plant7")
        ag = AgentStore.open(ag_home)
        try:
            gw.enroll(ag_home.identity, now)
            gw.grant("plant7", "app/**")
            ag.trust(gw_home.identity, now)
            agent = gw.agent("plant7")
            importer = AgentImporter(ag_home, ag, lambda: int(time.time()))
            profiled("gateway import", lambda: gw.import_secrets(values, None, now), top)
            first = profiled(
                "gateway export", lambda: build_bundle(gw_home, gw, agent, now, 3600), top
            )
            profiled("agent import", lambda: importer.import_bytes(first.name, first.data), top)
            profiled("gateway re-import 1%", lambda: gw.import_secrets(changed, None, now), top)
            second = build_bundle(gw_home, gw, agent, now + 1, 3600)
            profiled(
                "agent re-import 1%", lambda: importer.import_bytes(second.name, second.data), top
            )
        finally:
            gw.close()
            ag.close()


if __name__ == "__main__":
    main(sys.argv[1:])
