"""Dispatch: build each agent's bundle, put it to a destination, audit it. Used by
``relay gateway export`` (once) and ``relay gateway run`` (on a schedule)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from outer_gateway.audit import GatewayAudit
from outer_gateway.audit_import import contiguous_high
from outer_gateway.export import ExportedBundle, agents_to_export, build_bundle
from outer_gateway.store import GatewayStore
from outer_gateway.versions import drop_stale_labels, promote_due
from relay import crashpoint
from relay.audit import log
from relay.db import sa_executor
from relay.home import Home
from relay.transport import TransportOptions, open_destination

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


def dispatch(
    home: Home,
    store: GatewayStore,
    location: str,
    options: TransportOptions,
    validity: int,
    clock: Callable[[], int],
    only: str | None = None,
    full: bool = False,
) -> list[dict[str, Any]]:
    """Export to ``location`` for ``only`` or every agent with grants; one dict per bundle.

    Each bundle's ``bundle.exported`` record commits with its seq, before the file is written
    (see :func:`build_bundle`): a crash in between leaves a record and a spent seq for a file that
    never appeared (the next export takes the next seq), never a written bundle without its
    record or a seq sealed into two bundles. ``full``: full bundles, no deltas (spec §8.3)."""
    audit = GatewayAudit(home, store.engine)
    drop_stale_labels(store)
    for promoted in promote_due(store, clock()):
        audit.record(
            "secret.activated",
            path=promoted.path,
            version=promoted.version,
            replaced=promoted.replaced,
        )
    written = []
    destination = open_destination(location, options)
    try:
        for target in agents_to_export(store, only):
            ack = contiguous_high(store, target.identity.name)
            bundle = build_bundle(
                home, store, target, clock(), validity, ack, _audit_exported(ack), full
            )
            where = destination.put(bundle.name, bundle.data)
            crashpoint.reached("export.written")
            audit.deliver()
            written.append(
                {
                    "agent": bundle.agent,
                    "path": where,
                    "seq": bundle.seq,
                    "secrets": bundle.secrets,
                    "tombstones": bundle.tombstones,
                    "base_seq": bundle.base_seq,
                    "bytes": len(bundle.data),
                }
            )
    finally:
        destination.close()
    return written


def _audit_exported(ack: int) -> Callable[[Connection, ExportedBundle], None]:
    """Append ``bundle.exported`` in the transaction that reserves the bundle's seq."""

    def record(conn: Connection, bundle: ExportedBundle) -> None:
        log.append(
            sa_executor(conn),
            "bundle.exported",
            {
                "agent_name": bundle.agent,
                "bundle_seq": bundle.seq,
                "bundle_hash": bundle.bundle_id,
                "file": bundle.name,
                "secrets_count": bundle.secrets,
                "tombstones": bundle.tombstones,
                "audit_ack": ack,
                "base_seq": bundle.base_seq,
            },
        )

    return record
