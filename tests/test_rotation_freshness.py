"""Policies' ``--max-offline-age``/``--fail-closed`` travel to the agent (payload ``freshness``)
and make its API refuse a stale secret, judged on an injected clock; bulk changes never ship a
staged version the current one overtook."""

from __future__ import annotations

import json
import os
import time

import pytest

from inner_agent.service import AgentService, ApiError
from inner_agent.service_config import ServiceSettings
from inner_agent.store import AgentStore
from relay.bundle.payload import decode_secrets_payload
from relay.entry import parse_agent_get
from relay.errors import BundleRejected
from relay.home import Home
from tests.conftest import Pair, run_process, run_relay

PATH = "db/plant7/password"
VALUE = f"PLANTED-fresh-{os.urandom(6).hex()}".encode()
HOUR = 3600


def test_a_fail_closed_policy_refuses_a_stale_secret(pair: Pair) -> None:
    assert pair.gateway("grant", "plant7", "db/**").status == 0
    pair.put(PATH, VALUE)
    pair.put("db/other", VALUE)
    policy = pair.gateway("policy", "set", PATH, "--max-offline-age", "1h", "--fail-closed")
    assert policy.status == 0, policy.err
    assert pair.gateway("policy", "set", "tls/**", "--fail-closed").status == 0  # not granted
    (bundle,) = pair.export()
    assert pair.agent("import", str(bundle)).status == 0
    app = run_relay(
        "agent", "app", "add", "--home", str(pair.ag), "web", "--allow", "db/**", "--json"
    )
    creds = json.loads(app.out)
    home = Home.open(pair.ag, "agent")
    store = AgentStore.open(home)
    assert json.loads(store.get_meta("policies") or "[]") == [[PATH, HOUR, True]]
    clock = [time.time()]
    service = AgentService(
        store, home.store_path, ServiceSettings.from_config(home.config), lambda: clock[0]
    )
    token = service.issue_token(creds["client_id"], creds["client_secret"]).token
    assert service.read(token, PATH).value == VALUE
    clock[0] += 2 * HOUR
    with pytest.raises(ApiError) as refused:
        service.read(token, PATH)
    assert (refused.value.status, refused.value.code) == (410, "stale")
    assert service.read(token, "db/other").value == VALUE  # no policy: still served
    store.close()


def _age_the_agent(pair: Pair, seconds: int) -> None:
    """Make the agent's newest bundle ``seconds`` older (its creation time is what ages)."""
    store = AgentStore.open(Home.open(pair.ag, "agent"))
    created = int(store.get_meta("last_bundle_created") or 0)
    store.set_meta("last_bundle_created", str(created - seconds))
    store.close()


def test_agent_get_fails_closed_as_the_api_does_on_both_paths(pair: Pair) -> None:
    assert pair.gateway("grant", "plant7", "db/**").status == 0
    pair.put(PATH, VALUE)
    pair.put("db/other", VALUE)
    pair.put("db/local", VALUE)
    policy = pair.gateway("policy", "set", PATH, "--max-offline-age", "1h", "--fail-closed")
    assert policy.status == 0, policy.err
    (bundle,) = pair.export()
    assert pair.agent("import", str(bundle)).status == 0
    assert pair.agent("config", "set", "agent.fail_closed", "db/local").status == 0
    assert pair.agent("config", "set", "agent.max_staleness", "3h").status == 0
    assert pair.get(PATH).stdout == VALUE + b"\n"  # fresh: served
    _age_the_agent(pair, 2 * HOUR)
    fast_args = ["agent", "get", "--home", str(pair.ag), PATH]
    assert parse_agent_get(fast_args, None) is not None  # the start-up path (relay/entry.py)
    fast = run_process(*fast_args)
    via_click = pair.get(PATH)  # the click command
    for refused in (fast, via_click):
        assert refused.status == 1, refused.err
        assert refused.err.startswith("relay: error: stale: "), refused.err
        assert refused.stdout == b""
    assert pair.get("db/other").stdout == VALUE + b"\n"  # no policy: still served
    assert pair.get("db/local").stdout == VALUE + b"\n"  # agent.max_staleness not reached
    _age_the_agent(pair, 2 * HOUR)  # now 4h: past agent.max_staleness too
    assert run_process("agent", "get", "--home", str(pair.ag), "db/local").status == 1
    assert pair.get("db/local").err.startswith("relay: error: stale: ")
    out = pair.agent("audit", "--json").out
    denied = [r for r in map(json.loads, out.splitlines()) if r["type"] == "secret.denied"]
    assert [r["fields"]["reason"] for r in denied] == ["stale"] * 4


def test_policies_member_is_strict() -> None:
    base = {"v": 1, "state": "full", "secrets": []}
    for bad in ([["db/*", 0, True]], [["db/*", None, "yes"]], [["/x", None, True]], "x"):
        with pytest.raises(BundleRejected):
            decode_secrets_payload(json.dumps({**base, "freshness": bad}).encode(), 10, 64)
    ok = {**base, "freshness": [["db/*", 60, True], ["app/**", None, False]]}
    assert decode_secrets_payload(json.dumps(ok).encode(), 10, 64).policies == [
        ("db/*", 60, True),
        ("app/**", None, False),
    ]


def test_a_bulk_change_supersedes_a_staged_version(pair: Pair) -> None:
    assert pair.gateway("grant", "plant7", "db/**").status == 0
    pair.put(PATH, VALUE)
    staged = run_relay(
        "gateway", "secret", "put", "--home", str(pair.gw), PATH, "-", "--activates-at", "1h",
        stdin=b"staged",
    )  # fmt: skip
    assert staged.status == 0
    bulk = pair.root / "bulk.json"
    bulk.write_text(json.dumps({PATH: "bulk"}))
    assert pair.gateway("secret", "import", str(bulk)).status == 0
    listed = json.loads(pair.gateway("secret", "list", "--json").out)
    assert listed[0]["version"] == 3 and "pending" not in listed[0]  # above the staged v2
    (bundle,) = pair.export()
    assert pair.agent("import", str(bundle)).status == 0
    assert pair.get(PATH).stdout == b"bulk\n"


def test_a_bulk_import_keeps_the_previous_version_for_the_overlap(pair: Pair) -> None:
    assert pair.gateway("grant", "plant7", "db/**").status == 0
    pair.put(PATH, VALUE)
    pair.put("db/short", VALUE)
    assert pair.gateway("policy", "set", "db/short", "--overlap", "1s").status == 0
    bulk = pair.root / "bulk.json"
    bulk.write_text(json.dumps({PATH: "bulk", "db/short": "bulk", "db/new": "bulk"}))
    assert pair.gateway("secret", "import", str(bulk)).status == 0
    listed = {s["path"]: s for s in json.loads(pair.gateway("secret", "list", "--json").out)}
    assert listed[PATH]["version"] == 2 and listed[PATH]["previous"]["version"] == 1
    assert listed["db/short"]["previous"]["version"] == 1
    assert "previous" not in listed["db/new"]
    (bundle,) = pair.export()
    assert pair.agent("import", str(bundle)).status == 0
    assert pair.get(PATH).stdout == b"bulk\n"
    previous = pair.agent("get", "--version", "previous", PATH)
    assert previous.stdout == VALUE + b"\n", previous.err
    overlap_ends = {s["path"]: s["previous"]["until"] for s in listed.values() if "previous" in s}
    assert overlap_ends["db/short"] < overlap_ends[PATH]  # the policy's 1s, rotation.overlap 1h
    again = pair.gateway("secret", "import", str(bulk))  # unchanged: no new version
    assert again.status == 0 and "0 new or changed" in again.out
