"""``relay gateway secret put --activates-at`` and the labelled listing: the gateway side of
versioned values (current, previous for the overlap, pending with ``activates_at``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from relay.cli.common import echo_json, echo_table, format_time, now
from relay.home import Home

if TYPE_CHECKING:
    from outer_gateway.store import GatewayStore


def overlap_for(home: Home, store: GatewayStore, path: str) -> int:
    """How long a replaced version of ``path`` stays previous: its policy's ``--overlap``, or
    ``rotation.overlap`` (docs/rotation.md)."""
    from outer_gateway.policies import list_policies, policy_for
    from outer_gateway.rotation import overlap_of

    return overlap_of(home, policy_for(list_policies(store), path))


def put_labelled(
    home: Home,
    store: GatewayStore,
    path: str,
    value: bytes,
    expires: int | None,
    activates_at: str | None,
) -> None:
    """Store ``value`` as the new current version, or pre-stage it as pending."""
    from outer_gateway.audit import GatewayAudit
    from outer_gateway.versions import put_current, stage_pending
    from relay.when import parse_time

    audit = GatewayAudit(home, store.engine)
    overlap = overlap_for(home, store, path)
    clock = now()
    if activates_at is not None:
        at = parse_time(activates_at, clock)
        written = stage_pending(store, path, value, expires, at, overlap, clock)
        audit.record(
            "secret.staged",
            path=path,
            version=written.version,
            activates_at=at,
            superseded=written.superseded,
        )
        click.echo(f"staged {path} version {written.version}, current from {format_time(at)}")
        return
    written = put_current(store, path, value, expires, clock, overlap)
    audit.record(
        "secret.put",
        path=path,
        version=written.version,
        expires_at=expires,
        replaced=written.replaced,
        superseded=written.superseded,
    )
    click.echo(
        f"stored {path} version {written.version}"
        + (f", expires {format_time(expires)}" if expires else "")
    )


def list_labelled(home: Home, store: GatewayStore, include_deleted: bool, as_json: bool) -> None:
    """Print every secret's metadata with its previous and pending versions."""
    from outer_gateway.audit import GatewayAudit
    from outer_gateway.versions import labelled, promote_due

    audit = GatewayAudit(home, store.engine)
    for p in promote_due(store, now()):
        audit.record("secret.activated", path=p.path, version=p.version, replaced=p.replaced)
    items = store.list_secrets(include_deleted)
    labels = labelled(store)
    docs: dict[str, dict[str, Any]] = {
        s.path: {
            "path": s.path,
            "version": s.version,
            "expires_at": s.expires_at,
            "updated_at": s.updated_at,
            "deleted": s.deleted,
        }
        for s in items
    }
    for path, held in labels.items():
        doc = docs.setdefault(path, {"path": path, "version": None, "deleted": False})
        if "previous" in held:
            doc["previous"] = {"version": held["previous"][0], "until": held["previous"][1]}
        if "pending" in held:
            doc["pending"] = {"version": held["pending"][0], "activates_at": held["pending"][1]}
    ordered = [docs[path] for path in sorted(docs)]
    if as_json:
        echo_json(ordered)
        return
    echo_table(
        ("PATH", "VERSION", "EXPIRES", "UPDATED", "STATE", "PREVIOUS", "PENDING"),
        [_row(doc) for doc in ordered],
    )


def _row(doc: dict[str, Any]) -> tuple[Any, ...]:
    previous, pending = doc.get("previous"), doc.get("pending")
    until = (
        "-" if previous is None else f"{previous['version']} until {format_time(previous['until'])}"
    )
    at = (
        "-"
        if pending is None
        else f"{pending['version']} at {format_time(pending['activates_at'])}"
    )
    return (
        doc["path"],
        "-" if doc["version"] is None else doc["version"],
        format_time(doc.get("expires_at")),
        format_time(doc.get("updated_at")),
        "removed" if doc["deleted"] else ("active" if doc["version"] else "staged"),
        until,
        at,
    )
