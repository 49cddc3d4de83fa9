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
from relay.errors import BundleRejected
from relay.home import Home
from tests.conftest import Pair, run_relay

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
    assert listed[0]["version"] == 2 and "pending" not in listed[0]
    (bundle,) = pair.export()
    assert pair.agent("import", str(bundle)).status == 0
    assert pair.get(PATH).stdout == b"bulk\n"
