"""One round of "N secrets, 1% changed, export + import", as a command farm-bench can run.

``bench_targets`` runs it under ``farm-bench`` (A: relay, B: the reference chain, in turn), so the
published medians come from the same call. Each command prints one line ``seconds S``: the time of
the work the row measures, read inside the process (start-up is not the row's business; the
farm-bench report next to it gives the whole-process figures)::

    python -m benchmarks.delta_round prepare DIR N   # homes with N secrets, first bundle applied
    python -m benchmarks.delta_round relay DIR       # 1% changed: delta export + agent import
    python -m benchmarks.delta_round chain DIR       # 1% changed: the chain redoes everything

``relay``: before the timed part the gateway takes a new value for 1% of the paths (a different
1% each round); the timed part is ``build_bundle`` (a delta on the acknowledged bundle) and the
agent's import of it; after it the agent's audit bundle returns to the gateway (the
acknowledgement the next round's delta is based on), untimed, as it travels every period anyway.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_bundle import VALUE_BYTES, make_values

VALID_FOR = 7 * 24 * 3600
AGENT = "plant7"


def prepare(folder: Path, n: int) -> None:
    """Homes with ``n`` secrets granted to the agent; the first (full) bundle applied and
    acknowledged, so the next export is a delta."""
    from inner_agent.store import AgentStore
    from outer_gateway.store import GatewayStore
    from relay.home import Home

    now = int(time.time())
    gw_home = Home.create(folder / "gateway", "gateway", "gw")
    ag_home = Home.create(folder / "agent", "agent", AGENT)
    gw, ag = GatewayStore.open(gw_home), AgentStore.open(ag_home)
    try:
        gw.enroll(ag_home.identity, now)
        gw.grant(AGENT, "app/**")
        ag.trust(gw_home.identity, now)
        gw.import_secrets(make_values(n, seed=n), None, now)
    finally:
        gw.close()
        ag.close()
    (folder / "state.json").write_text(json.dumps({"n": n, "round": 0}))
    _seconds, kind = _relay_round(folder, change=False)
    assert kind == "full", kind


def relay_round(folder: Path) -> float:
    seconds, kind = _relay_round(folder, change=True)
    assert kind == "delta", f"expected a delta bundle, got {kind}"
    return seconds


def _relay_round(folder: Path, change: bool) -> tuple[float, str]:
    from inner_agent.audit import AgentAudit
    from inner_agent.importer import AgentImporter
    from inner_agent.store import AgentStore
    from outer_gateway.audit import GatewayAudit
    from outer_gateway.audit_import import AuditImporter, contiguous_high
    from outer_gateway.export import build_bundle
    from outer_gateway.store import GatewayStore
    from relay.home import Home

    _warm_imports()
    state = json.loads((folder / "state.json").read_text())
    gw_home = Home.open(folder / "gateway", "gateway")
    ag_home = Home.open(folder / "agent", "agent")
    gw, ag = GatewayStore.open(gw_home), AgentStore.open(ag_home)
    clock = lambda: int(time.time())  # noqa: E731
    try:
        if change:
            state["round"] += 1
            gw.import_secrets(_one_percent(state["n"], state["round"]), None, clock())
        importer = AgentImporter(ag_home, ag, clock)
        agent = gw.agent(AGENT)
        ack = contiguous_high(gw, AGENT)
        started = time.perf_counter()
        bundle = build_bundle(gw_home, gw, agent, clock(), VALID_FOR, ack)
        outcome = importer.import_bytes(bundle.name, bundle.data)
        seconds = time.perf_counter() - started
        assert outcome.status == "applied", outcome.message
        _acknowledge(gw_home, gw, ag_home, AgentAudit, AuditImporter, GatewayAudit, clock)
    finally:
        gw.close()
        ag.close()
    (folder / "state.json").write_text(json.dumps(state))
    return seconds, "full" if bundle.base_seq is None else "delta"


def _warm_imports() -> None:
    """Import what the export and the import load lazily, so the timed part is their work (the
    chain's round does not pay Python's start-up either)."""
    import importlib

    for name in (
        "inner_agent.rotation",
        "outer_gateway.agent_keys",
        "outer_gateway.keyring",
        "outer_gateway.policies",
    ):
        importlib.import_module(name)


def _acknowledge(
    gw_home: Any, gw: Any, ag_home: Any, agent_audit: Any, importer: Any, gw_audit: Any, clock: Any
) -> None:
    """The agent's audit bundle (its ``bundle.applied`` record) back to the gateway."""
    audit_import = importer(gw_home, gw, gw_audit(gw_home, gw.engine), clock)
    for exported in agent_audit(ag_home).export_bundles(gw_home.identity, clock()):
        outcome = audit_import.import_bytes(exported.name, exported.data)
        assert outcome.status == "imported", outcome.message


def _one_percent(n: int, round_no: int) -> dict[str, bytes]:
    """New values for 1% of the ``n`` paths of :func:`make_values`, a different 1% each round."""
    rng = random.Random(round_no)
    offset = round_no % 100
    return {
        f"app/grp{i % 100}/secret{i}": rng.randbytes(VALUE_BYTES) for i in range(offset, n, 100)
    }


def chain_round(folder: Path) -> float:
    """The reference: the chain redoes everything with the changed values."""
    from benchmarks.bench_bundle import change_one_percent
    from benchmarks.bench_targets import chain_round as chain

    state = json.loads((folder / "state.json").read_text())
    values = change_one_percent(make_values(state["n"], seed=state["n"]), seed=state["n"] + 1)
    return chain(values, folder / "chain")


def main(argv: list[str]) -> None:
    command, folder = argv[0], Path(argv[1])
    if command == "prepare":
        prepare(folder, int(argv[2]))
        return
    seconds = relay_round(folder) if command == "relay" else chain_round(folder)
    print(f"seconds {seconds:.6f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
