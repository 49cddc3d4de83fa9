"""Fail-closed rules, judged the same way by every reader of the agent's secrets.

The local API (:mod:`inner_agent.service`), ``relay agent get`` (both its fast path and the
click command: :mod:`inner_agent.get_command`) and the store source of exec, render and hooks
(:mod:`inner_agent.secret_source`) all ask :meth:`FreshnessRules.fails_closed`, so a secret is
refused (``stale``) by each of them at the same second. A path fails closed when:

- it matches ``agent.fail_closed`` and the agent is past ``agent.max_staleness``; or
- the most specific freshness rule the gateway shipped (its rotation policies, spec §8.2) fails
  closed and the newest applied bundle is older than the rule's maximum offline age (or
  ``agent.max_staleness`` when the rule sets none).

The age is judged from the creation time of the newest applied bundle (``last_bundle_created``;
``last_import`` for stores written before bundle times were kept); an agent that never imported
is stale wherever a limit applies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from relay.bundle.policy_rows import PolicyRow, governing
from relay.paths import matches_any

_META = "SELECT value FROM meta WHERE key = ?"


@dataclass(frozen=True)
class FreshnessRules:
    """What decides whether a path fails closed now (no I/O: the caller gathers it)."""

    fail_closed: tuple[str, ...]
    max_staleness: int | None
    policies: tuple[PolicyRow, ...]
    fresh: float | None  # creation time of the newest applied bundle

    def age(self, now: float) -> float | None:
        return None if self.fresh is None else max(0.0, now - self.fresh)

    def fails_closed(self, path: str, now: float) -> bool:
        """Whether ``path`` must be refused as ``stale`` at ``now``."""
        age = self.age(now)
        local = bool(self.fail_closed) and matches_any(list(self.fail_closed), path)
        if local and _past(age, self.max_staleness):
            return True
        rule = governing(list(self.policies), path)  # shipped by the gateway (policy set)
        if rule is None or not rule[2]:
            return False
        return _past(age, rule[1] if rule[1] is not None else self.max_staleness)


def policy_rows(text: str | None) -> tuple[PolicyRow, ...]:
    """The freshness rows the last bundle shipped (kept as JSON in the store's meta)."""
    return tuple((str(p), a, bool(f)) for p, a, f in json.loads(text)) if text else ()


def rules_on(conn: Any, fail_closed: tuple[str, ...], max_staleness: int | None) -> FreshnessRules:
    """The rules as a raw store connection (:mod:`inner_agent.rawdb`) holds them."""
    fresh = _meta(conn, "last_bundle_created") or _meta(conn, "last_import")
    return FreshnessRules(
        fail_closed,
        max_staleness,
        policy_rows(_meta(conn, "policies")),
        float(fresh) if fresh else None,
    )


def _past(age: float | None, limit: int | None) -> bool:
    return limit is not None and (age is None or age > limit)


def _meta(conn: Any, key: str) -> str | None:
    row = conn.execute(_META, (key,)).fetchone()
    return None if row is None or row[0] is None else str(row[0])
