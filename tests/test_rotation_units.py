"""Pure parts of rotation on their own: labels on a clock, generated values, times, policies."""

from __future__ import annotations

import pytest

from inner_agent import executor_ssh, executors, rotation, versions
from inner_agent.fail_closed import FreshnessRules
from inner_agent.labels import PENDING, PREVIOUS, StoredVersion, resolve
from outer_gateway import rotation_inbox
from outer_gateway.policies import Policy, policy_for
from relay.bundle import policy_rows
from relay.bundle.versions import PENDING as WIRE_PENDING
from relay.errors import UsageError
from relay.generate import charset_of, generate
from relay.when import parse_time


def test_labels_switch_at_activates_at() -> None:
    rows = [
        StoredVersion("current", b"old", 1, None),
        StoredVersion(PENDING, b"new", 2, None, at=100, overlap=10),
    ]
    assert resolve(rows, 99).by_label["current"].version == 1
    assert resolve(rows, 100).by_label["current"].version == 2
    assert resolve(rows, 105).by_label[PREVIOUS].version == 1
    assert PREVIOUS not in resolve(rows, 110).by_label
    assert WIRE_PENDING == PENDING


def test_generated_values_and_times() -> None:
    assert set(generate(40, "hex").decode()) <= set("0123456789abcdef")
    assert charset_of("chars:ab") == "ab"
    with pytest.raises(UsageError):
        charset_of("emoji")
    assert parse_time("2027-01-15T08:00:00Z", 0) == 1_800_000_000
    assert parse_time("1h", 5) == 3605


def test_most_specific_policy_wins() -> None:
    broad = Policy("db/**", 86400, 32, "alnum", None, None, False)
    narrow = Policy("db/plant7/*", None, 32, "alnum", 60, 3600, True)
    assert policy_for([broad, narrow], "db/plant7/pw") == narrow
    assert policy_rows.governing([("db/**", None, True)], "db/a") == ("db/**", None, True)


def test_fail_closed_rules_judge_age_against_the_governing_rule() -> None:
    shipped = (("db/**", None, True), ("db/plant7/*", 3600, True), ("db/open/*", 60, False))
    rules = FreshnessRules(("tls/*",), 7200, shipped, fresh=1000.0)
    assert not rules.fails_closed("db/plant7/pw", 1000 + 3600)  # the limit itself is still fresh
    assert rules.fails_closed("db/plant7/pw", 1000 + 3601)
    assert not rules.fails_closed("db/x", 1000 + 7200)  # no age: agent.max_staleness
    assert rules.fails_closed("db/x", 1000 + 7201)
    assert not rules.fails_closed("db/open/pw", 10**9)  # the most specific rule stays open
    assert rules.fails_closed("tls/key", 1000 + 7201) and not rules.fails_closed("app/x", 10**9)
    never = FreshnessRules((), None, shipped, fresh=None)
    assert never.fails_closed("db/plant7/pw", 0) and not never.fails_closed("db/x", 0)


def test_modules_expose_their_entry_points() -> None:
    assert executors.KINDS == ("command", "postgresql", "ssh")
    assert callable(executor_ssh.SshExecutor)
    assert callable(rotation.rotate_locally) and callable(versions.activate_due)
    assert callable(rotation_inbox.process_inbox)
