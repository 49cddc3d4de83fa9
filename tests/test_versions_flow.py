"""Versioned values end to end: previous for the overlap, pending successors that switch on the
agent's clock with no new bundle, judged with an injected clock around ``activates_at``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from inner_agent.activation import ActivationJob
from inner_agent.audit import AgentAudit
from inner_agent.get_command import DEFAULT_CLOCK_SKEW, clock_skew
from inner_agent.importer import AgentImporter
from inner_agent.lookup import read_secret
from inner_agent.rawdb import raw_connection
from inner_agent.store import AgentStore
from outer_gateway.store import GatewayStore
from outer_gateway.versions import promote_due
from relay.home import Home
from tests.conftest import Pair, run_relay

OLD = f"PLANTED-old-{os.urandom(6).hex()}".encode()
MID = f"PLANTED-mid-{os.urandom(6).hex()}".encode()
NEW = f"PLANTED-new-{os.urandom(6).hex()}".encode()
PATH = "db/plant7/password"


def _stage(pair: Pair, value: bytes, activates_at: str) -> None:
    result = run_relay(
        "gateway", "secret", "put", "--home", str(pair.gw), PATH, "-",
        "--activates-at", activates_at, stdin=value,
    )  # fmt: skip
    assert result.status == 0, result.err
    assert "staged" in result.out


def _rfc3339(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _setup(pair: Pair, activates_at: int) -> Path:
    assert pair.gateway("grant", "plant7", "db/**").status == 0
    pair.put(PATH, OLD)
    pair.put(PATH, MID)
    _stage(pair, NEW, _rfc3339(activates_at))
    (bundle,) = pair.export()
    return bundle


def _value(pair: Pair, now: int, label: str = "current", skew: int = 0) -> bytes:
    home = Home.open(pair.ag, "agent")
    with raw_connection(home) as conn:
        return read_secret(conn, PATH, now, label, skew).value


def test_previous_and_pending_travel_and_are_served_by_label(pair: Pair) -> None:
    at = int(time.time()) + 3600
    bundle = _setup(pair, at)
    assert pair.agent("import", str(bundle)).status == 0
    assert pair.get(PATH).stdout == MID + b"\n"
    for label, value in (("previous", OLD), ("pending", NEW)):
        result = run_relay("agent", "get", "--home", str(pair.ag), "--version", label, PATH)
        assert result.stdout == value + b"\n", result.err
    listed = json.loads(pair.agent("secret", "list", "--json").out)
    assert listed[0]["version"] == 2
    assert listed[0]["previous"]["version"] == 1
    assert listed[0]["pending"] == {"version": 3, "activates_at": at}
    gw_listed = json.loads(pair.gateway("secret", "list", "--json").out)
    assert gw_listed[0]["pending"] == {"version": 3, "activates_at": at}
    records = pair.agent("audit", "--json").out
    assert '"label":"pending"' in records.replace(" ", "")
    for value in (OLD, MID, NEW):
        assert value not in records.encode()


def test_the_switch_is_judged_with_the_agents_clock_and_its_leeway(pair: Pair) -> None:
    """``activates_at`` is judged with ``agent.clock_skew`` (as ``expires`` and certificate
    validity are): the successor is current from ``activates_at - skew`` on, not a second
    before, for every reader and for the activation job."""
    at = int(time.time()) + 3600
    bundle = _setup(pair, at)
    assert pair.agent("config", "set", "agent.clock_skew", "2m").status == 0
    skew = 120
    assert pair.agent("import", str(bundle)).status == 0
    home = Home.open(pair.ag, "agent")
    assert clock_skew(home) == skew  # what `relay agent get` judges with
    # one second before the leeway: still the old value; at its edge: the successor
    assert _value(pair, at - skew - 1, skew=skew) == MID
    assert _value(pair, at - skew - 1, "pending", skew) == NEW
    assert _value(pair, at - skew, skew=skew) == NEW
    assert _value(pair, at - skew, "previous", skew) == MID
    assert _value(pair, at + 86400, skew=skew) == NEW  # the gateway's overlap (1h) has ended
    store = AgentStore.open(home)
    assert store.skew == skew
    early = store.get_secret(PATH, at - skew - 1)
    assert early is not None and early.value == MID and early.switch_at == at - skew
    clock = [at - skew - 1]
    changed: list[int] = []
    job = ActivationJob(store, lambda: clock[0], lambda: changed.append(1))
    assert job.run() == [] and not changed
    clock[0] = at - skew
    (activation,) = job.run()
    assert (activation.path, activation.version, activation.replaced) == (PATH, 3, 2)
    assert activation.activates_at == at  # recorded as the gateway set it
    assert changed == [1]
    assert job.run() == []  # once
    assert store.get_secret(PATH, at) is not None
    assert store.labelled()[PATH] == {"previous": (2, at + 3600)}
    store.close()


def test_the_fast_path_knows_the_default_leeway() -> None:
    from relay.config import SETTINGS
    from relay.durations import parse_duration

    assert parse_duration(str(SETTINGS["agent.clock_skew"].default)) == DEFAULT_CLOCK_SKEW


def test_a_successor_arriving_after_its_time_activates_at_once(pair: Pair) -> None:
    at = int(time.time()) + 600
    bundle = _setup(pair, at)
    home = Home.open(pair.ag, "agent")
    store = AgentStore.open(home)
    importer = AgentImporter(home, store, lambda: at + 5, AgentAudit(home))
    outcome = importer.import_bytes(bundle.name, bundle.read_bytes())
    assert outcome.status == "applied"
    assert outcome.result is not None
    assert [a.version for a in outcome.result.activated] == [3]
    got = store.get_secret(PATH)  # the stored rows switched, not just the reading
    assert got is not None and got.version == 3 and got.value == NEW
    store.close()
    records = [json.loads(r) for r in pair.agent("audit", "--json").out.splitlines()]
    activated = [r["fields"] for r in records if r["type"] == "secret.activated"]
    assert activated == [{"path": PATH, "version": 3, "replaced": 2, "activates_at": at}]


def test_the_gateway_promotes_at_activation_and_keeps_the_overlap(pair: Pair) -> None:
    at = int(time.time()) + 600
    _setup(pair, at)
    store = GatewayStore.open(Home.open(pair.gw, "gateway"))
    assert promote_due(store, at - 1) == []
    (promoted,) = promote_due(store, at)
    assert (promoted.version, promoted.replaced) == (3, 2)
    (meta,) = store.list_secrets()
    assert meta.version == 3
    store.close()


def test_versions_stay_monotonic_when_a_put_supersedes_a_staged_one(pair: Pair) -> None:
    assert pair.gateway("grant", "plant7", "db/**").status == 0
    pair.put(PATH, OLD)
    _stage(pair, NEW, "1h")
    pair.put(PATH, MID)  # an immediate change wins over the staged successor
    listed = json.loads(pair.gateway("secret", "list", "--json").out)
    assert listed[0]["version"] == 3
    assert "pending" not in listed[0]
    audit = pair.gateway("audit", "--own", "--json").out
    assert '"superseded":2' in audit.replace(" ", "")


def test_bad_activation_time_is_refused_and_changes_nothing(pair: Pair) -> None:
    pair.put(PATH, OLD)
    for bad in ("tomorrow", "2027-13-01T00:00:00Z", "2027-01-01", "-5m"):
        result = run_relay(
            "gateway", "secret", "put", "--home", str(pair.gw), PATH, "-",
            "--activates-at", bad, stdin=NEW,
        )  # fmt: skip
        assert result.status == 2
        assert result.err.startswith("relay: error: bad_time: "), result.err
    listed = json.loads(pair.gateway("secret", "list", "--json").out)
    assert listed == [{**listed[0], "version": 1}] and "pending" not in listed[0]


def test_unknown_label_is_refused(pair: Pair) -> None:
    pair.put(PATH, OLD)
    result = run_relay("agent", "get", "--home", str(pair.ag), "--version", "next", PATH)
    assert result.status == 2
