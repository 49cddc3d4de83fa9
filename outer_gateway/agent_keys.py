"""Agent keys at the gateway: rotation requests from the return stream, and revoked agents.

- :func:`apply_rotation_requests`: inside the audit import's transaction, each new
  ``key.rotation_requested`` record of an agent moves its enrollment to the new key (the next
  bundle is sealed to it); a refused request is reported, never applied.
- :func:`revoke_agent`, :func:`revoked_agents`: a revoked agent gets no more exports, and its
  return stream is refused for bundles created after the cut-off.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from outer_gateway import schema
from outer_gateway.store import GatewayStore
from relay.audit.chain import AuditRecord
from relay.db import write_transaction
from relay.errors import UsageError
from relay.identity import PublicIdentity
from relay.trust.agent_rotation import (
    AGENT_REVOKED,
    REQUEST_TYPE,
    RotationRefused,
    check_request,
)


@dataclass(frozen=True)
class RotationResult:
    """One request's fate, for the gateway's own audit."""

    agent: str
    record_seq: int
    new_key_id: str | None
    refused: str | None  # reason code, or None when applied
    message: str = ""

    def audit(self) -> tuple[str, dict[str, str | int | None]]:
        fields: dict[str, str | int | None] = {
            "agent_name": self.agent,
            "record_seq": self.record_seq,
        }
        if self.refused is None:
            return "agent.key_rotated", {**fields, "key_id": self.new_key_id}
        return "agent.key_rotation_refused", {**fields, "reason": self.refused}


def apply_rotation_requests(
    conn: Connection, sender: PublicIdentity, records: Iterable[AuditRecord]
) -> list[RotationResult]:
    """Apply the rotation requests among ``records`` (new records from ``sender``), in order."""
    results: list[RotationResult] = []
    current = sender
    for record in records:
        if record.type != REQUEST_TYPE:
            continue
        try:
            if _revoked(conn, current.name):
                raise RotationRefused("the agent is revoked", code=AGENT_REVOKED)
            new = check_request(record.fields, current)
        except RotationRefused as exc:
            results.append(RotationResult(current.name, record.seq, None, exc.code, exc.message))
            continue
        t = schema.agents
        conn.execute(
            update(t)
            .where(t.c.name == current.name)
            .values(key_id=new.key_id, sign_public=new.sign_public, box_public=new.box_public)
        )
        results.append(RotationResult(current.name, record.seq, new.key_id, None))
        current = new
    return results


def revoke_agent(store: GatewayStore, name: str, now: int, cutoff: int) -> bool:
    """Revoke agent ``name`` (``unknown_agent`` if not enrolled); True if newly revoked."""
    agent = store.agent(name)
    t = schema.agent_revocations
    with write_transaction(store.engine) as conn:
        if _revoked(conn, name):
            return False
        conn.execute(
            insert(t).values(name=name, key_id=agent.identity.key_id, revoked_at=now, cutoff=cutoff)
        )
    return True


def revoked_agents(store: GatewayStore) -> dict[str, int]:
    """Revoked agents' names and cut-offs."""
    t = schema.agent_revocations
    with store.engine.connect() as conn:
        return {str(r.name): int(r.cutoff) for r in conn.execute(select(t.c.name, t.c.cutoff))}


def check_not_revoked(store: GatewayStore, name: str) -> None:
    """Refuse (``agent_revoked``) to export to a revoked agent."""
    if name in revoked_agents(store):
        raise UsageError(f"agent {name} is revoked", code=AGENT_REVOKED)


def revoked_cutoff(conn: Connection, name: str) -> int | None:
    """The cut-off of a revoked agent, or ``None`` (inside the caller's transaction)."""
    t = schema.agent_revocations
    cutoff = conn.execute(select(t.c.cutoff).where(t.c.name == name)).scalar_one_or_none()
    return None if cutoff is None else int(cutoff)


def _revoked(conn: Connection, name: str) -> bool:
    t = schema.agent_revocations
    return conn.execute(select(t.c.name).where(t.c.name == name)).first() is not None
