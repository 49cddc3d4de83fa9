"""``relay gateway run``: scheduled exports (the heartbeat) and return-stream imports."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from relay.cli.common import (
    duration,
    home_option,
    make_transport_options,
    now,
    transport_options,
)
from relay.cli.gateway import _audit, _open, gateway
from relay.codes import NOT_CONFIGURED
from relay.home import Home

if TYPE_CHECKING:
    from outer_gateway.store import GatewayStore


@gateway.command()
@home_option
@transport_options
@click.option(
    "--once",
    is_flag=True,
    help="Run one period's pass (import, then export to the agents due) and exit.",
)
def run(home: Path, identity_file: Path | None, known_hosts: Path | None, once: bool) -> None:
    """Export on a schedule (export.every to export.to) until SIGTERM or SIGINT.

    Every period first imports the agents' audit bundles from import.from (if set), so the
    acknowledgements are fresh, then sends each agent a bundle, even when nothing changed (a
    delta on the newest bundle it acknowledged, or its full state): the bundle is also the
    heartbeat, so a lost bundle costs one period and a silent
    link shows as staleness. Periods are aligned on the epoch; each agent is exported once per
    period, and several processes sharing one PostgreSQL store divide the agents between them.
    With --once: one pass, for a cron job or a timer; a failed export is its exit status (the
    daemon reports it and retries next period). Under systemd (``Type=notify``) it says
    ``READY=1`` when it starts, ``STATUS=``/``RELAY_PERIOD=N`` after each period and
    ``STOPPING=1``.
    """
    import signal
    import threading
    import time
    from types import FrameType

    from relay.errors import UsageError
    from relay.sdnotify import Notifier

    notifier = Notifier.from_environ()
    opened, store = _open(home)
    location = str(opened.config.get("export.to"))
    if not location:
        raise UsageError("set export.to (and export.every) first", code=NOT_CONFIGURED)
    period = duration(str(opened.config.get("export.every")), "")
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if once:
        _one_period(opened, store, location, identity_file, known_hosts, period, once=True)
        return
    audit = _audit(opened, store)
    audit.record("gateway.started", period=period, destination=location)
    click.echo(f"exporting to {location} every {period}s", err=True)
    from relay.cli.gateway_schedule import ScheduledRotations

    rotations = ScheduledRotations(opened, store)
    from outer_gateway.fleet import period_end

    next_export = 0
    periods = 0
    notifier.send(READY="1", STATUS=f"exporting to {location} every {period}s")
    while not stop.is_set():
        rotations.run_due(now())
        if now() >= next_export:
            _one_period(opened, store, location, identity_file, known_hosts, period)
            next_export = period_end(now(), period)
            periods += 1
            notifier.send(STATUS=f"period {periods} done", RELAY_PERIOD=str(periods))
        stop.wait(rotations.wait(time.time(), next_export))
    notifier.send(STOPPING="1", STATUS="stopping")
    rotations.close()
    audit.record("gateway.stopped")


def _one_period(
    opened: Home,
    store: GatewayStore,
    location: str,
    identity_file: Path | None,
    known_hosts: Path | None,
    period: int,
    once: bool = False,
) -> None:
    """One pass of ``relay gateway run``: import the return stream, then export to the agents
    due in this period (:mod:`outer_gateway.fleet`). A failed export is reported and retried in
    the next period; with ``once`` (``--once``, a cron job or a timer) it is raised, so the
    process exits with the error's status."""
    from outer_gateway.audit_import import AuditImporter
    from outer_gateway.dispatch import activate_due_versions
    from outer_gateway.fleet import ExportPass
    from relay.errors import RelayError
    from relay.transport import open_destination

    config = opened.config
    delete_after = bool(config.get("import.delete_after"))
    options = make_transport_options(opened, identity_file, known_hosts, delete_after)
    sources = [s.strip() for s in str(config.get("import.from")).split(",") if s.strip()]
    importer = AuditImporter(opened, store, _audit(opened, store), now)
    for source in sources:
        try:
            for o in importer.import_location(source, options):
                if o.status == "imported":
                    click.echo(f"imported {o.name}: {o.new} new records", err=True)
                elif o.status == "rejected":
                    click.echo(f"relay: rejected: {o.name}: {o.code}: {o.message}", err=True)
        except RelayError as exc:
            click.echo(f"relay: error: {source}: {exc.diagnostics()}", err=True)
    validity = duration(None, str(config.get("export.valid_for")))
    try:
        activate_due_versions(opened, store, now())
        destination = open_destination(location, options)
        try:
            report = ExportPass(opened, store, now(), period, validity).run(
                destination,
                lambda item: click.echo(f"exported {item['path']} (seq {item['seq']})", err=True),
            )
        finally:
            destination.close()
        for agent, code, message in report.failed:
            click.echo(f"relay: error: {agent}: {code}: {message}", err=True)
    except RelayError as exc:
        if once:
            raise
        click.echo(f"relay: error: {exc.diagnostics()} (retrying next period)", err=True)
