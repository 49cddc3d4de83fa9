"""``relay gateway import`` and ``relay gateway audit [verify]``: the return stream."""

from __future__ import annotations

from pathlib import Path

import click

from relay.cli.common import (
    echo_json,
    echo_table,
    home_option,
    import_options,
    json_option,
    make_transport_options,
    now,
    report_import,
)
from relay.cli.gateway import _audit, _open, gateway


@gateway.command("import")
@import_options
def import_(
    home: Path,
    locations: tuple[str, ...],
    as_json: bool,
    identity_file: Path | None,
    known_hosts: Path | None,
    delete_after_import: bool,
) -> None:
    """Import agents' audit bundles (the return stream) from files, folders or sftp:// URLs."""
    from outer_gateway.audit_import import AuditImporter

    opened, store = _open(home)
    importer = AuditImporter(opened, store, _audit(opened, store), now)
    options = make_transport_options(opened, identity_file, known_hosts, delete_after_import)
    outcomes = [o for loc in locations for o in importer.import_location(loc, options)]
    report_import(
        outcomes,
        as_json,
        lambda o: dict(o.__dict__),
        lambda o: (
            f"imported {o.name}: agent {o.agent}, {o.new} new records, {o.duplicates} already held"
        ),
    )


@gateway.group(invoke_without_command=True)
@click.option(
    "--home",
    "home",
    envvar="RELAY_HOME",
    type=click.Path(path_type=Path, file_okay=False),
    help="The home folder.",
)
@click.option("--agent", "agent_name", help="Only this agent's records.")
@click.option("--own", is_flag=True, help="The gateway's own records instead of the agents'.")
@json_option
@click.pass_context
def audit(
    ctx: click.Context, home: Path | None, agent_name: str | None, own: bool, as_json: bool
) -> None:
    """List audit records received from agents (JSON lines with --json)."""
    if ctx.invoked_subcommand is not None:
        return
    if home is None:
        raise click.UsageError("missing option '--home' (or RELAY_HOME)")
    from relay.audit.formats import format_json_line

    opened, store = _open(home)
    log = _audit(opened, store)
    if own:
        rows = [(opened.identity.name, r) for r in log.own_records()]
    else:
        if agent_name is not None:
            store.agent(agent_name)
        rows = log.received(agent_name)
    if as_json:
        for name, record in rows:
            click.echo(format_json_line(name, record))
        return
    echo_table(
        ("AGENT", "SEQ", "TIME", "TYPE", "DETAILS"),
        [
            (name, r.seq, r.time, r.type, " ".join(f"{k}={v}" for k, v in sorted(r.fields.items())))
            for name, r in rows
        ],
    )


@audit.command("verify")
@home_option
@json_option
@click.option("--agent", "agent_name", help="Only this agent.")
def audit_verify(home: Path, as_json: bool, agent_name: str | None) -> None:
    """Check each agent's chain is intact and has no gap; exit 0 only if all are."""
    import sys

    from outer_gateway.audit_import import verify_agents

    opened, store = _open(home)
    names = [agent_name] if agent_name else [a.identity.name for a in store.agents()]
    for name in names:
        store.agent(name)
    chains = verify_agents(_audit(opened, store), names)
    if as_json:
        echo_json(
            [
                {
                    "agent": c.agent,
                    "ok": c.ok,
                    "records": c.report.count,
                    "high": max(c.report.high, c.expected_high),
                    "contiguous_high": c.report.contiguous_high,
                    "gaps": [list(g) for g in c.missing],
                    "breaks": [
                        {"seq": b.seq, "kind": b.kind, "detail": b.detail} for b in c.report.breaks
                    ],
                }
                for c in chains
            ]
        )
    else:
        for c in chains:
            if c.ok:
                click.echo(f"{c.agent}: ok, records 1-{c.report.high} intact")
            for start, end in c.missing:
                span = f"{start}" if start == end else f"{start}-{end}"
                click.echo(f"{c.agent}: gap {span}: records missing")
            for b in c.report.breaks:
                click.echo(f"{c.agent}: break at {b.seq}: {b.kind} {b.detail}".rstrip())
    if not all(c.ok for c in chains):
        sys.exit(1)
