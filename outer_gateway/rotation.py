"""Rotation at the gateway: a new generated version now, for one path or every path a policy
says is due. Each rotation is a ``secret.rotated`` audit record (never the value)."""

from __future__ import annotations

from dataclasses import dataclass

from outer_gateway.audit import GatewayAudit
from outer_gateway.policies import Policy, list_policies, policy_for
from outer_gateway.store import GatewayStore
from outer_gateway.versions import put_current
from relay.codes import NOT_FOUND
from relay.durations import parse_duration
from relay.errors import SecretError
from relay.generate import DEFAULT_CHARSET, DEFAULT_LENGTH, generate
from relay.home import Home


@dataclass(frozen=True)
class Rotated:
    """One rotation done at the gateway."""

    path: str
    version: int
    replaced: int | None
    reason: str


def rotate_path(
    home: Home,
    store: GatewayStore,
    path: str,
    now: int,
    reason: str = "manual",
    policies: list[Policy] | None = None,
    **context: str | int | None,
) -> Rotated:
    """Generate and store a new current version of ``path`` (which must exist)."""
    if not any(s.path == path for s in store.list_secrets()):
        raise SecretError(f"no secret {path!r} at the gateway", code=NOT_FOUND)
    policy = policy_for(list_policies(store) if policies is None else policies, path)
    value = generate(
        policy.length if policy else DEFAULT_LENGTH, policy.charset if policy else DEFAULT_CHARSET
    )
    overlap = overlap_of(home, policy)
    written = put_current(store, path, value, None, now, overlap)
    GatewayAudit(home, store.engine).record(
        "secret.rotated",
        path=path,
        version=written.version,
        replaced=written.replaced,
        reason=reason,
        policy=policy.pattern if policy else None,
        **context,
    )
    return Rotated(path, written.version, written.replaced, reason)


def overlap_of(home: Home, policy: Policy | None) -> int:
    """The policy's overlap, or ``rotation.overlap``."""
    if policy is not None and policy.overlap is not None:
        return policy.overlap
    return parse_duration(str(home.config.get("rotation.overlap")))


def due_paths(store: GatewayStore, policy: Policy, now: int) -> list[str]:
    """Live paths whose governing policy is ``policy`` and whose current version is at least
    ``rotate_every`` old."""
    if policy.rotate_every is None:
        return []
    policies = list_policies(store)
    return [
        s.path
        for s in store.list_secrets()
        if s.updated_at + policy.rotate_every <= now and policy_for(policies, s.path) == policy
    ]


def rotate_due(home: Home, store: GatewayStore, pattern: str, now: int) -> list[Rotated]:
    """Rotate every path the policy of ``pattern`` says is due (the scheduled job)."""
    policies = list_policies(store)
    policy = next((p for p in policies if p.pattern == pattern), None)
    if policy is None:
        return []
    return [
        rotate_path(home, store, path, now, "scheduled", policies)
        for path in due_paths(store, policy, now)
    ]
