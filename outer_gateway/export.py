"""Export: build one sealed, signed secrets bundle per agent from the gateway's store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from outer_gateway.export_view import ExportView
from outer_gateway.store import Agent, GatewayStore
from relay import crashpoint
from relay.bundle.envelope import parse_envelope
from relay.bundle.seal import bundle_file_name, seal_bundle
from relay.errors import TOO_LARGE, UsageError
from relay.home import Home

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

# Prefix, header (under 1 KiB with our names), signature, nonce and MAC around the plaintext.
ENVELOPE_ALLOWANCE = 2048


@dataclass(frozen=True)
class ExportedBundle:
    """One bundle ready to be written."""

    agent: str
    name: str
    data: bytes
    seq: int
    secrets: int
    tombstones: int
    bundle_id: str = ""


def agents_to_export(store: GatewayStore, only: str | None) -> list[Agent]:
    """The named agent, or every agent that has at least one grant."""
    from outer_gateway.agent_keys import check_not_revoked, revoked_agents

    if only is not None:
        check_not_revoked(store, only)
        return [store.agent(only)]
    granted = {agent for agent, _ in store.grants()}
    revoked = revoked_agents(store)
    return [
        a for a in store.agents() if a.identity.name in granted and a.identity.name not in revoked
    ]


def build_bundle(
    home: Home,
    store: GatewayStore,
    agent: Agent,
    now: int,
    valid_for: int,
    audit_ack: int = 0,
    on_sealed: Callable[[Connection, ExportedBundle], None] | None = None,
    view: ExportView | None = None,
) -> ExportedBundle:
    """The full-state secrets bundle for ``agent``: its granted secrets and tombstones.

    The seq is reserved, the bundle sealed and ``on_sealed`` run (the export's audit record) in
    one transaction: a seq is committed only together with the one bundle it was sealed into,
    and always before that bundle is written anywhere. ``view``: the pass's read of the store
    (:class:`ExportView`), when several bundles are built from one."""
    name = agent.identity.name
    from outer_gateway.agent_keys import check_not_revoked

    check_not_revoked(store, name)  # never seal to a revoked agent, whoever asks
    if view is None:
        view = ExportView(store, now, [name])
    content = view.payload(name, audit_ack)
    plaintext = content.plaintext
    cap = int(home.config.get("limits.max_bundle_bytes"))
    if len(plaintext) + ENVELOPE_ALLOWANCE > cap:  # refuse before a seq is spent
        raise UsageError(
            f"the bundle for {name} would be over limits.max_bundle_bytes ({cap})", code=TOO_LARGE
        )
    trust = trust_section(home, now)
    with store.reserve_seq(name, now) as (conn, seq):
        data = seal_bundle(
            kind="secrets",
            sender=home.identity,
            keys=home.secrets.keys,
            recipient=agent.identity,
            seq=seq,
            created=now,
            expires=now + valid_for,
            plaintext=plaintext,
            trust=trust,
        )
        if len(data) > cap:  # never written, so the seq is not spent (rolled back)
            raise UsageError(
                f"the bundle for {name} is over limits.max_bundle_bytes", code=TOO_LARGE
            )
        envelope = parse_envelope(data)
        bundle = ExportedBundle(
            name,
            bundle_file_name(envelope.header),
            data,
            seq,
            content.secrets,
            content.tombstones,
            envelope.bundle_id,
        )
        if on_sealed is not None:
            on_sealed(conn, bundle)
        crashpoint.reached("export.sealed")
    crashpoint.reached("export.committed")
    return bundle


def trust_section(home: Home, now: int) -> dict[str, Any] | None:
    """The certificate chain bundles carry when the gateway has a root (spec §15)."""
    from outer_gateway.keyring import check_not_revoked, finish_rotation, load

    ring = load(home)
    if ring is None:
        return None
    finish_rotation(home, ring)  # a key rotation a crash interrupted
    check_not_revoked(ring)
    return ring.section(now)
