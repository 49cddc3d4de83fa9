"""``relay agent …``: the isolated side."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from relay.cli.common import (
    config_group,
    echo_json,
    echo_table,
    format_time,
    home_option,
    import_options,
    json_option,
    make_transport_options,
    now,
    report_import,
    transport_options,
    warn_if_unwrapped,
)
from relay.home import Home

if TYPE_CHECKING:
    from inner_agent.importer import Outcome
    from inner_agent.store import AgentStore


@click.group()
def agent() -> None:
    """The inner agent: import bundles, keep secrets encrypted, serve them."""


agent.add_command(config_group("agent"))


def _register_service_commands() -> None:
    # Light modules: FastAPI, uvicorn and watchdog are imported inside the commands.
    from relay.cli.agent_apps import app
    from relay.cli.agent_exec import exec_, render
    from relay.cli.agent_keys import key as agent_key
    from relay.cli.agent_rotation import rotate
    from relay.cli.agent_run import run

    agent.add_command(run)
    agent.add_command(app)
    agent.add_command(agent_key)
    agent.add_command(exec_)
    agent.add_command(render)
    agent.add_command(rotate)
    from relay.cli.backup import add_backup_commands

    add_backup_commands(agent, "agent")


_register_service_commands()


def _open(home: Path) -> tuple[Home, AgentStore]:
    from inner_agent.store import AgentStore

    opened = Home.open(home, "agent")
    return opened, AgentStore.open(opened)


@agent.command()
@home_option
@click.option("--name", required=True, help="This agent's name (a-z, 0-9, . _ -).")
@click.option(
    "--request-out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Where to write the enrollment request for the gateway.",
)
def init(home: Path, name: str, request_out: Path) -> None:
    """Create an agent home and its enrollment request."""
    from inner_agent.audit import AgentAudit
    from inner_agent.store import AgentStore
    from relay.transport.folder import write_atomic

    created = Home.create(home, "agent", name)
    AgentStore.open(created).close()
    AgentAudit(created).record("key.created", key_id=created.identity.key_id, name=name)
    document = created.identity.to_document(created.secrets.keys)
    write_atomic(request_out.parent, request_out.name, document, mode=0o644)
    click.echo(f"agent {name} initialised in {home}")
    click.echo(f"enrollment request: {request_out}")
    click.echo(f"fingerprint: {created.identity.fingerprint}")
    warn_if_unwrapped(created)


@agent.command()
@home_option
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
def request(home: Path, out: Path) -> None:
    """Write the enrollment request again."""
    from relay.transport.folder import write_atomic

    opened = Home.open(home, "agent")
    write_atomic(out.parent, out.name, opened.identity.to_document(opened.secrets.keys), 0o644)
    click.echo(f"wrote {out}")
    click.echo(f"fingerprint: {opened.identity.fingerprint}")


@agent.command()
@home_option
@click.argument("identity_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--replace", is_flag=True, help="Replace a gateway trusted before.")
def trust(home: Path, identity_file: Path, replace: bool) -> None:
    """Pin the gateway whose public identity file is IDENTITY_FILE."""
    from relay.identity import MAX_IDENTITY_FILE, read_identity_file
    from relay.transport.folder import read_capped

    try:
        data = read_capped(identity_file, MAX_IDENTITY_FILE)
    except Exception:
        data = b""
    if b'"relay_gateway_root"' in data:
        from relay.cli.agent_trust import trust_root

        trust_root(home, data, replace)
        return
    gateway = read_identity_file(identity_file, "gateway")
    _, store = _open(home)
    new = store.trust(gateway, now(), replace=replace)
    if new:
        from inner_agent.audit import AgentAudit

        AgentAudit(Home.open(home, "agent")).record(
            "key.trusted", name=gateway.name, key_id=gateway.key_id
        )
    click.echo(f"{'trusting' if new else 'already trusting'}: gateway {gateway.name}")
    click.echo(f"fingerprint: {gateway.fingerprint}  (compare with the gateway's, out of band)")


@agent.command("import")
@import_options
def import_(
    home: Path,
    locations: tuple[str, ...],
    as_json: bool,
    identity_file: Path | None,
    known_hosts: Path | None,
    delete_after_import: bool,
) -> None:
    """Verify and apply bundles from files, folders or sftp:// URLs."""
    from inner_agent.audit import AgentAudit
    from inner_agent.importer import AgentImporter

    opened, store = _open(home)
    importer = AgentImporter(opened, store, now, AgentAudit(opened))
    options = make_transport_options(opened, identity_file, known_hosts, delete_after_import)
    outcomes = [o for loc in locations for o in importer.import_location(loc, options)]
    report_import(outcomes, as_json, _outcome_json, _applied_line)


def _applied_line(o: Outcome) -> str | None:
    r = o.result
    if r is None:
        return None
    return (
        f"applied {o.name}: seq {r.seq}, {r.written} written, "
        f"{r.removed} removed, {r.unchanged} unchanged"
    )


def _outcome_json(o: Outcome) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "file": o.name,
        "status": o.status,
        "code": o.code,
        "message": o.message,
        "seq": o.seq,
    }
    if o.result is not None:
        doc.update(written=o.result.written, removed=o.result.removed, unchanged=o.result.unchanged)
    if o.quarantined:
        doc["quarantined"] = o.quarantined
    return doc


@agent.command()
@home_option
@click.option(
    "--version",
    "label",
    type=click.Choice(["current", "previous", "pending"]),
    default="current",
    help="Which labelled version (default current).",
)
@click.argument("path")
def get(home: Path, path: str, label: str) -> None:
    """Print the value of PATH and a newline (nothing else on stdout)."""
    from inner_agent.get_command import get_value

    value = get_value(home, path, label)
    out = sys.stdout.buffer
    out.write(value + b"\n")
    out.flush()


def _who() -> dict[str, str | int]:
    """Who asked, for the audit record: the local user of this CLI process."""
    from inner_agent.get_command import who

    return who()


@agent.group()
def secret() -> None:
    """Inspect the secrets this agent holds (metadata only)."""


@secret.command("list")
@home_option
@json_option
def secret_list(home: Path, as_json: bool) -> None:
    """List secrets: path, version, expiry, size, previous and pending versions; never values."""
    _, store = _open(home)
    items = store.list_secrets()
    labelled = store.labelled()
    if as_json:
        docs = {
            s.path: {
                "path": s.path,
                "version": s.version,
                "expires_at": s.expires_at,
                "updated_at": s.updated_at,
                "size": s.size,
                "expired": s.expires_at is not None and s.expires_at <= now(),
            }
            for s in items
        }
        for path, labels in labelled.items():
            doc = docs.setdefault(path, {"path": path, "version": None})
            doc.update(_label_json(labels))
        echo_json([docs[path] for path in sorted(docs)])
        return
    rows: list[tuple[Any, ...]] = [
        (
            s.path,
            s.version,
            format_time(s.expires_at),
            format_time(s.updated_at),
            s.size,
            *_label_cells(labelled.get(s.path, {})),
        )
        for s in items
    ]
    held = {s.path for s in items}
    rows += [
        (path, "-", "-", "-", "-", *_label_cells(labels))
        for path, labels in sorted(labelled.items())
        if path not in held
    ]
    echo_table(("PATH", "VERSION", "EXPIRES", "UPDATED", "SIZE", "PREVIOUS", "PENDING"), rows)


def _label_json(labels: dict[str, tuple[int, int | None]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if "previous" in labels:
        version, until = labels["previous"]
        doc["previous"] = {"version": version, "until": until}
    if "pending" in labels:
        version, at = labels["pending"]
        doc["pending"] = {"version": version, "activates_at": at}
    return doc


def _label_cells(labels: dict[str, tuple[int, int | None]]) -> tuple[str, str]:
    previous = labels.get("previous")
    pending = labels.get("pending")
    return (
        "-" if previous is None else str(previous[0]),
        "-" if pending is None else f"{pending[0]} at {format_time(pending[1])}",
    )


@agent.command()
@home_option
@json_option
def status(home: Path, as_json: bool) -> None:
    """This agent's name, trusted gateway, secrets and last import."""
    opened, store = _open(home)
    gateways = list(store.trusted_senders().values())
    last = store.get_meta("last_import")
    from inner_agent.audit import AgentAudit

    audit = AgentAudit(opened)
    doc: dict[str, Any] = {
        "name": opened.identity.name,
        "fingerprint": opened.identity.fingerprint,
        "gateway": gateways[0].name if gateways else None,
        "gateway_fingerprint": gateways[0].fingerprint if gateways else None,
        "gateway_key_id": gateways[0].key_id if gateways else None,
        **_root_status(store),
        "key_protection": opened.key_protection(),
        "secrets": store.count_secrets(),
        "last_import": int(last) if last else None,
        "audit_unacked": audit.unacked(),
        "audit_acked": audit.acknowledged(),
    }
    if as_json:
        echo_json(doc)
        return
    for key, value in doc.items():
        shown = format_time(value) if key == "last_import" else value
        click.echo(f"{key}: {'-' if shown is None else shown}")


def _root_status(store: AgentStore) -> dict[str, Any]:
    from inner_agent.trust_store import root_state
    from relay.trust.documents import root_fingerprint
    from relay.trust.time_floor import read_floor

    floor = read_floor(store.engine)
    clock = {"time_floor": floor, "clock_behind": floor is not None and now() < floor}
    state = root_state(store.engine)
    if state is None:
        return {"gateway_root": None, **clock}
    root = {"version": state.version, "fingerprint": root_fingerprint(state.key)}
    return {"gateway_root": root, "revoked_keys": sorted(state.revoked), **clock}


@agent.group(invoke_without_command=True)
@click.option(
    "--home",
    "home",
    envvar="RELAY_HOME",
    type=click.Path(path_type=Path, file_okay=False),
    help="The home folder (or RELAY_HOME).",
)
@json_option
@click.pass_context
def audit(ctx: click.Context, home: Path | None, as_json: bool) -> None:
    """List this agent's audit records still held (JSON lines with --json)."""
    if ctx.invoked_subcommand is not None:
        return
    if home is None:
        raise click.UsageError("missing option '--home' (or RELAY_HOME)")
    from inner_agent.audit import AgentAudit

    opened = Home.open(home, "agent")
    _print_records(opened.identity.name, AgentAudit(opened).records(), as_json)


def _print_records(agent_name: str, records: list[Any], as_json: bool) -> None:
    from relay.audit.formats import format_listing_line

    if as_json:
        for record in records:
            click.echo(format_listing_line(agent_name, record))
        return
    echo_table(
        ("SEQ", "TIME", "TYPE", "DETAILS"),
        [
            (r.seq, r.time, r.type, " ".join(f"{k}={v}" for k, v in sorted(r.fields.items())))
            for r in records
        ],
    )


@audit.command("export")
@home_option
@json_option
@transport_options
@click.option("--to", "to", required=True, help="Folder, sftp://… or udp://… destination.")
def audit_export(
    home: Path, to: str, as_json: bool, identity_file: Path | None, known_hosts: Path | None
) -> None:
    """Write sealed audit bundles with every record the gateway has not acknowledged (several
    when they would not fit in one under limits.max_bundle_bytes); prints one path a line."""
    from inner_agent.activation import switch_due_in
    from inner_agent.audit import AgentAudit, trusted_gateway
    from relay import crashpoint
    from relay.transport import open_destination

    opened = Home.open(home, "agent")
    audit_log = AgentAudit(opened)
    switch_due_in(opened, now(), audit_log.record)  # a switch made with no daemon: reported now
    bundles = audit_log.export_bundles(trusted_gateway(opened), now())
    destination = open_destination(to, make_transport_options(opened, identity_file, known_hosts))
    written = []
    try:
        for exported in bundles:
            where = destination.put(exported.name, exported.data)  # recorded when sealed
            crashpoint.reached("audit_export.written")
            written.append(
                {
                    "path": where,
                    "seq": exported.seq,
                    "records": exported.records,
                    "first_seq": exported.first,
                    "last_seq": exported.last,
                }
            )
    finally:
        destination.close()
    if as_json:
        echo_json({"bundles": written, "records": sum(b.records for b in bundles)})
        return
    for item in written:
        click.echo(item["path"])
