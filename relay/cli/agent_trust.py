"""``relay agent trust`` of a gateway root identity file (spec §15): pin the root, not a key."""

from __future__ import annotations

from pathlib import Path

import click

from relay.cli.common import now
from relay.home import Home


def trust_root(home: Path, data: bytes, replace: bool) -> None:
    """Pin the root in ``data`` (a root identity file) and the online key it certifies."""
    from inner_agent.audit import AgentAudit
    from inner_agent.store import AgentStore
    from inner_agent.trust_store import pin_root
    from relay.trust.chain import parse_root_identity
    from relay.trust.documents import root_fingerprint, root_key_id

    root, cert, signer = parse_root_identity(data)
    opened = Home.open(home, "agent")
    store = AgentStore.open(opened)
    try:
        new = pin_root(store.engine, root, cert, signer, now(), replace)
    finally:
        store.close()
    if new:
        AgentAudit(opened).record(
            "key.trusted", name=root.gateway, key_id=root_key_id(root.key), version=root.version
        )
    click.echo(f"{'trusting' if new else 'already trusting'}: gateway {root.gateway} (root)")
    click.echo(
        f"root fingerprint: {root_fingerprint(root.key)}  (compare with the gateway's, out of band)"
    )
