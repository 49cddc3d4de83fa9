"""Rotation policies, ``relay gateway rotate`` and scheduled rotation (APScheduler jobs in the
gateway's database), triggered with an injected clock instead of sleeping."""

from __future__ import annotations

import json
import os
import string

import pytest

from outer_gateway.rotation import rotate_due
from outer_gateway.rotation_schedule import RotationSchedule
from outer_gateway.store import GatewayStore
from relay.home import Home
from tests.conftest import Pair, run_relay

PATH = "db/plant7/password"
OLD = f"PLANTED-pol-{os.urandom(6).hex()}".encode()
DAY = 86400


def _policy(pair: Pair, *args: str) -> None:
    result = pair.gateway("policy", "set", *args)
    assert result.status == 0, result.err


def test_policy_set_list_rm(pair: Pair) -> None:
    _policy(pair, "db/**", "--rotate-every", "30d", "--length", "40", "--charset", "hex")
    _policy(pair, "db/plant7/*", "--overlap", "2h", "--max-offline-age", "7d", "--fail-closed")
    listed = json.loads(pair.gateway("policy", "list", "--json").out)
    assert listed == [
        {
            "pattern": "db/**",
            "rotate_every": 30 * DAY,
            "length": 40,
            "charset": "hex",
            "overlap": None,
            "max_offline_age": None,
            "fail_closed": False,
        },
        {
            "pattern": "db/plant7/*",
            "rotate_every": None,
            "length": 32,
            "charset": "alnum",
            "overlap": 7200,
            "max_offline_age": 7 * DAY,
            "fail_closed": True,
        },
    ]
    assert "30d" in pair.gateway("policy", "list").out
    assert pair.gateway("policy", "rm", "db/**").status == 0
    assert [p["pattern"] for p in json.loads(pair.gateway("policy", "list", "--json").out)] == [
        "db/plant7/*"
    ]
    gone = pair.gateway("policy", "rm", "db/**")
    assert (gone.status, gone.err.strip()) == (2, "relay: error: not_found: no policy 'db/**'")
    audit = pair.gateway("audit", "--own", "--json").out
    assert audit.count('"policy.set"') == 2 and '"policy.removed"' in audit


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("db/*", "--charset", "emoji"), "bad_charset"),
        (("db/*", "--charset", "chars:a"), "bad_charset"),
        (("db/*", "--length", "4"), "bad_value"),
        (("db/*", "--rotate-every", "soon"), "bad_duration"),
        (("/abs", "--rotate-every", "1d"), "bad_pattern"),
    ],
)
def test_bad_policies_are_refused(pair: Pair, args: tuple[str, ...], code: str) -> None:
    result = pair.gateway("policy", "set", *args)
    assert result.status != 0
    assert result.err.startswith(f"relay: error: {code}: "), result.err
    assert json.loads(pair.gateway("policy", "list", "--json").out) == []


def test_rotate_now_generates_with_the_policy_and_ships_previous(pair: Pair) -> None:
    assert pair.gateway("grant", "plant7", "db/**").status == 0
    pair.put(PATH, OLD)
    _policy(pair, "db/plant7/*", "--length", "48", "--charset", "hex", "--overlap", "1d")
    result = pair.gateway("rotate", PATH, "--json")
    assert result.status == 0, result.err
    assert json.loads(result.out) == {"path": PATH, "version": 2, "replaced": 1}
    (bundle,) = pair.export()
    assert pair.agent("import", str(bundle)).status == 0
    value = pair.get(PATH).stdout.strip()
    assert len(value) == 48 and set(value.decode()) <= set("0123456789abcdef")
    previous = run_relay("agent", "get", "--home", str(pair.ag), "--version", "previous", PATH)
    assert previous.stdout == OLD + b"\n"
    audit = pair.gateway("audit", "--own", "--json").out
    assert '"secret.rotated"' in audit and value.decode() not in audit
    missing = pair.gateway("rotate", "db/none")
    assert missing.err.startswith("relay: error: not_found: ")


def test_scheduled_rotation_runs_when_due_on_an_injected_clock(pair: Pair) -> None:
    pair.put(PATH, OLD)
    pair.put("other/thing", OLD)
    _policy(pair, "db/**", "--rotate-every", "1d", "--charset", "digits")
    home = Home.open(pair.gw, "gateway")
    store = GatewayStore.open(home)
    (meta,) = [s for s in store.list_secrets() if s.path == PATH]
    t0 = meta.updated_at
    schedule = RotationSchedule(store)
    schedule.sync(t0)
    assert schedule.next_due() == t0 + DAY
    ran: list[str] = []

    def rotate(pattern: str, now: int) -> None:
        ran.append(pattern)
        rotate_due(home, store, pattern, now)

    assert schedule.run_due(t0 + DAY - 1, rotate) == []
    assert schedule.run_due(t0 + DAY, rotate) == ["db/**"]
    versions = {s.path: s.version for s in store.list_secrets()}
    assert versions == {PATH: 2, "other/thing": 1}  # only what the policy governs
    # The job lives in the database: a new schedule (a restarted gateway) sees it.
    schedule.close()
    again = RotationSchedule(store)
    assert again.next_due() == t0 + 2 * DAY
    # Missed runs while down are coalesced into one.
    assert again.run_due(t0 + 5 * DAY, rotate) == ["db/**"]
    assert again.next_due() == t0 + 6 * DAY
    assert {s.path: s.version for s in store.list_secrets()}[PATH] == 3
    assert set(store.list_secrets()[0].path) <= set(string.printable)
    # A removed policy takes its job with it.
    assert pair.gateway("policy", "rm", "db/**").status == 0
    again.sync(t0 + 6 * DAY)
    assert again.next_due() is None
    again.close()
    store.close()
