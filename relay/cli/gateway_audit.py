"""``relay gateway import`` and ``relay gateway audit [verify]``: the return stream."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from outer_gateway.audit_verify import AgentChain
    from relay.audit.chain import ChainReport


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
    from relay.audit.formats import format_listing_line

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
            click.echo(format_listing_line(name, record))
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
@click.option("--agent", "agent_name", help="Only this agent (the gateway's own chain is skipped).")
def audit_verify(home: Path, as_json: bool, agent_name: str | None) -> None:
    """Check the audit is complete: each agent's chain intact, no gap, heard from within
    audit.max_silence, its head never backwards; and the gateway's own chain intact. Exit 0 only
    if all are."""
    import sys

    from outer_gateway.audit_verify import verify_agents, verify_own
    from relay.durations import parse_duration

    opened, store = _open(home)
    names = [agent_name] if agent_name else [a.identity.name for a in store.agents()]
    for name in names:
        store.agent(name)
    log = _audit(opened, store)
    max_silence = parse_duration(str(opened.config.get("audit.max_silence")))
    chains = verify_agents(log, store, names, now(), max_silence)
    own = None if agent_name else verify_own(log)
    if as_json:
        echo_json(_verify_json(opened.identity.name, chains, own))
    else:
        for c in chains:
            _echo_agent(c, max_silence)
        if own is not None:
            _echo_own(opened.identity.name, own)
    if not all(c.ok for c in chains) or (own is not None and not own.ok):
        sys.exit(1)


def _echo_agent(c: AgentChain, max_silence: int) -> None:
    if c.ok:
        click.echo(f"{c.agent}: ok, records 1-{c.report.high} intact")
    for start, end in c.missing:
        span = f"{start}" if start == end else f"{start}-{end}"
        click.echo(f"{c.agent}: gap {span}: records missing")
    for b in c.report.breaks:
        click.echo(f"{c.agent}: break at {b.seq}: {b.kind} {b.detail}".rstrip())
    if c.silent_for is not None:
        click.echo(
            f"{c.agent}: silent for {_span(c.silent_for)}: no audit bundle imported "
            f"(audit.max_silence {_span(max_silence)})"
        )
    for h in c.backwards:
        click.echo(
            f"{c.agent}: head went backwards: bundle {h.seq} has head {h.head}, "
            f"bundle {h.earlier_seq} had head {h.earlier_head}"
        )


def _echo_own(name: str, own: ChainReport) -> None:
    if own.ok:
        click.echo(f"{name} (this gateway): ok, own records 1-{own.high} intact")
    for start, end in own.gaps:
        click.echo(f"{name} (this gateway): gap {start}-{end}: own records missing")
    for b in own.breaks:
        click.echo(f"{name} (this gateway): break at {b.seq}: {b.kind} {b.detail}".rstrip())


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _verify_json(
    gateway_name: str, chains: list[AgentChain], own: ChainReport | None
) -> dict[str, object]:
    agents = [
        {
            "agent": c.agent,
            "ok": c.ok,
            "records": c.report.count,
            "high": max(c.report.high, c.expected_high),
            "contiguous_high": c.report.contiguous_high,
            "gaps": [list(g) for g in c.missing],
            "breaks": [{"seq": b.seq, "kind": b.kind, "detail": b.detail} for b in c.report.breaks],
            "last_heard": c.last_heard,
            "silent_for": c.silent_for,
            "head_backwards": [h.__dict__ for h in c.backwards],
        }
        for c in chains
    ]
    doc: dict[str, object] = {"ok": all(c.ok for c in chains), "agents": agents}
    if own is not None:
        doc["ok"] = doc["ok"] and own.ok
        doc["gateway"] = {
            "name": gateway_name,
            "ok": own.ok,
            "records": own.count,
            "high": own.high,
            "gaps": [list(g) for g in own.gaps],
            "breaks": [{"seq": b.seq, "kind": b.kind, "detail": b.detail} for b in own.breaks],
        }
    return doc
