"""Rotation policies at the gateway: which secrets rotate, how often, and what values look like.

A policy applies to the paths its glob ``pattern`` matches; when several match, the most
specific (longest pattern) wins. Stored in the gateway's database (SQLCipher or PostgreSQL).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update

from outer_gateway import schema
from outer_gateway.store import GatewayStore
from relay.codes import NOT_FOUND
from relay.db import write_transaction
from relay.errors import UsageError
from relay.paths import matches_any

T = schema.rotation_policies


@dataclass(frozen=True)
class Policy:
    """One rotation policy (durations in seconds; ``None``: not set)."""

    pattern: str
    rotate_every: int | None
    length: int
    charset: str
    overlap: int | None
    max_offline_age: int | None
    fail_closed: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def set_policy(store: GatewayStore, policy: Policy, now: int) -> bool:
    """Create or replace the policy of ``policy.pattern``; True if it is new."""
    values = {k: v for k, v in asdict(policy).items() if k != "pattern"}
    with write_transaction(store.engine) as conn:
        found = conn.execute(select(T.c.pattern).where(T.c.pattern == policy.pattern)).first()
        if found is None:
            conn.execute(insert(T).values(pattern=policy.pattern, updated_at=now, **values))
            return True
        query = update(T).where(T.c.pattern == policy.pattern)
        conn.execute(query.values(updated_at=now, **values))
    return False


def remove_policy(store: GatewayStore, pattern: str) -> None:
    """Remove a policy; ``not_found`` if there is none."""
    with write_transaction(store.engine) as conn:
        if conn.execute(delete(T).where(T.c.pattern == pattern)).rowcount == 0:
            raise UsageError(f"no policy {pattern!r}", code=NOT_FOUND)


def list_policies(store: GatewayStore) -> list[Policy]:
    columns = [T.c[name] for name in Policy.__dataclass_fields__]
    with store.engine.connect() as conn:
        rows = conn.execute(select(*columns).order_by(T.c.pattern)).all()
    return [Policy(r[0], r[1], int(r[2]), str(r[3]), r[4], r[5], bool(r[6])) for r in rows]


def shipped_policies(store: GatewayStore, paths: list[str]) -> list[tuple[str, int | None, bool]]:
    """The freshness rows (``relay/bundle/policy_rows.py``) of the policies that set an offline
    age or fail closed and govern at least one of ``paths`` (the recipient's)."""
    policies = list_policies(store)
    governing = {policy_for(policies, path) for path in paths}
    return [
        (p.pattern, p.max_offline_age, p.fail_closed)
        for p in policies
        if p in governing and (p.max_offline_age is not None or p.fail_closed)
    ]


def policy_for(policies: list[Policy], path: str) -> Policy | None:
    """The most specific policy whose pattern matches ``path``."""
    matching = [p for p in policies if matches_any([p.pattern], path)]
    return max(matching, key=lambda p: (len(p.pattern), p.pattern), default=None)
