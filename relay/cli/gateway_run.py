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
def run(home: Path, identity_file: Path | None, known_hosts: Path | None) -> None:
    """Export on a schedule (export.every to export.to) until SIGTERM or SIGINT.

    Every period first imports the agents' audit bundles from import.from (if set), so the
    acknowledgements are fresh, then sends each agent its full current state, even when nothing
    changed: the bundle is also the heartbeat, so a lost bundle costs one period and a silent
    link shows as staleness. Under systemd (``Type=notify``) it says ``READY=1`` when it starts,
    ``STATUS=``/``RELAY_PERIOD=N`` after each period and ``STOPPING=1``.
    """
    import signal
    import threading
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
    audit = _audit(opened, store)
    audit.record("gateway.started", period=period, destination=location)
    click.echo(f"exporting to {location} every {period}s", err=True)
    from relay.cli.gateway_schedule import ScheduledRotations

    rotations = ScheduledRotations(opened, store)
    next_export = 0
    periods = 0
    notifier.send(READY="1", STATUS=f"exporting to {location} every {period}s")
    while not stop.is_set():
        rotations.run_due(now())
        if now() >= next_export:
            _one_period(opened, store, location, identity_file, known_hosts)
            next_export = now() + period
            periods += 1
            notifier.send(STATUS=f"period {periods} done", RELAY_PERIOD=str(periods))
        stop.wait(rotations.wait(now(), next_export))
    notifier.send(STOPPING="1", STATUS="stopping")
    rotations.close()
    audit.record("gateway.stopped")


def _one_period(
    opened: Home,
    store: GatewayStore,
    location: str,
    identity_file: Path | None,
    known_hosts: Path | None,
) -> None:
    """One pass of ``relay gateway run``: import the return stream, then export."""
    from outer_gateway.audit_import import AuditImporter
    from outer_gateway.dispatch import dispatch
    from relay.errors import RelayError

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
        for item in dispatch(opened, store, location, options, validity, now):
            click.echo(f"exported {item['path']} (seq {item['seq']})", err=True)
    except RelayError as exc:
        click.echo(f"relay: error: {exc.diagnostics()} (retrying next period)", err=True)
