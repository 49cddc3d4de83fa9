"""``relay hop``: move bundles between transports in a middle segment, verifying, not decrypting."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from relay.cli.common import (
    duration,
    echo_json,
    json_option,
    make_transport_options,
    now,
    transport_options,
)
from relay.codes import BAD_IDENTITY
from relay.errors import RelayError, UsageError
from relay.home import Home

if TYPE_CHECKING:
    from relay.hop.forward import Hop, HopOutcome
    from relay.identity import PublicIdentity


def _home(path: Path, name: str) -> Home:
    """Open the hop's home, creating it on first use."""
    if not (path / "identity.key").exists():
        from relay.hop.store import HopStore

        created = Home.create(path, "hop", name)
        HopStore.open(created).close()
        click.echo(f"hop {name} initialised in {path}", err=True)
    return Home.open(path, "hop")


@click.group(invoke_without_command=True)
@click.option(
    "--home",
    envvar="RELAY_HOME",
    type=click.Path(path_type=Path, file_okay=False),
    help="The hop's home: pinned identities, what it forwarded, its audit.",
)
@click.option("--from", "source", help="Folder or sftp:// URL to take bundles from.")
@click.option("--to", "destination", help="Folder, sftp:// or udp:// URL to put them to.")
@click.option(
    "--trust",
    "trust_files",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Identity file of a sender to accept (gateway identity or agent request).",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Trust the root in a --trust file even if another root of that gateway was trusted "
    "(the visit after a stolen root).",
)
@click.option("--every", help="Run as a loop, one pass per period (e.g. 30s).")
@click.option("--name", default="hop", show_default=True, help="Name when creating the home.")
@click.option(
    "--delete-after-forward", is_flag=True, help="Remove each forwarded file from the source."
)
@transport_options
@json_option
@click.pass_context
def hop(
    ctx: click.Context,
    home: Path | None,
    source: str | None,
    destination: str | None,
    trust_files: tuple[Path, ...],
    replace: bool,
    every: str | None,
    name: str,
    delete_after_forward: bool,
    identity_file: Path | None,
    known_hosts: Path | None,
    as_json: bool,
) -> None:
    """Forward bundles from --from to --to, checking every signature against --trust."""
    if ctx.invoked_subcommand is not None:
        return
    if home is None or source is None or destination is None:
        raise click.UsageError("relay hop needs --home, --from and --to")
    from relay.hop.forward import Hop
    from relay.hop.store import HopStore

    opened = _home(home, name)
    store = HopStore.open(opened)
    forwarder = Hop(opened, store, now)
    for path in trust_files:
        _trust_file(forwarder, path, replace)
    options = make_transport_options(opened, identity_file, known_hosts)
    if every is None:
        outcomes = forwarder.run_once(source, destination, options, delete_after_forward)
        _report(outcomes, as_json)
        if any(o.status == "rejected" for o in outcomes):
            sys.exit(1)
        return
    _loop(
        forwarder, source, destination, options, delete_after_forward, duration(every, ""), as_json
    )


def _loop(
    forwarder: object,
    source: str,
    destination: str,
    options: object,
    delete_after: bool,
    period: int,
    as_json: bool,
) -> None:
    from relay.hop.forward import Hop
    from relay.transport import TransportOptions

    assert isinstance(forwarder, Hop)  # noqa: S101 - typed by the caller
    assert isinstance(options, TransportOptions)  # noqa: S101
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    forwarder.record("hop.started", period=period)
    while not stop.is_set():
        try:
            _report(forwarder.run_once(source, destination, options, delete_after), as_json)
        except RelayError as exc:
            click.echo(f"relay: error: {exc.diagnostics()} (retrying in {period}s)", err=True)
        stop.wait(period)
    forwarder.record("hop.stopped")


def _trust_file(forwarder: Hop, path: Path, replace: bool) -> None:
    """Pin what ``path`` names: a gateway's root (a root identity file, as agents pin it), or a
    sender's key (a gateway identity without a root, an agent enrollment request)."""
    from relay.hop.trust_store import pin_root, rooted

    data = _read_trust_file(path)
    store, now_ = forwarder.store, forwarder.clock()
    if b'"relay_gateway_root"' in data:
        from relay.trust.chain import parse_root_identity
        from relay.trust.documents import root_fingerprint, root_key_id

        root, cert, _signer = parse_root_identity(data)
        if pin_root(store.engine, root, cert, now_, replace):
            forwarder.record(
                "key.trusted", name=root.gateway, key_id=root_key_id(root.key), version=root.version
            )
            click.echo(
                f"trusting gateway {root.gateway} (root): {root_fingerprint(root.key)}", err=True
            )
        return
    identity = _read_any_identity(path)
    if identity.role == "gateway" and rooted(store.engine, identity.name):
        click.echo(
            f"gateway {identity.name} is trusted by its root: {path} (a key) is not needed",
            err=True,
        )
        return
    if store.pin(identity):
        forwarder.record("key.trusted", name=identity.name, key_id=identity.key_id)
        click.echo(f"trusting {identity.role} {identity.name}: {identity.fingerprint}", err=True)


def _read_trust_file(path: Path) -> bytes:
    from relay.identity import MAX_IDENTITY_FILE
    from relay.transport.folder import read_capped

    try:
        return read_capped(path, MAX_IDENTITY_FILE)
    except Exception:
        raise UsageError(f"cannot read identity file {path}", code=BAD_IDENTITY) from None


def _read_any_identity(path: Path) -> PublicIdentity:
    from relay.identity import read_identity_file

    for role in ("gateway", "agent"):
        try:
            return read_identity_file(path, role)
        except UsageError:
            continue
    raise UsageError(f"{path} is not a gateway identity or agent request", code=BAD_IDENTITY)


def _report(items: list[HopOutcome], as_json: bool) -> None:
    if as_json:
        echo_json([o.__dict__ for o in items])
    for o in items:
        if o.status == "rejected":
            click.echo(
                f"relay: rejected: {o.name}: {o.code}: {o.message} (left at the source)", err=True
            )
        elif not as_json and o.status == "forwarded":
            click.echo(f"forwarded {o.name} -> {o.destination}")


@hop.command("audit")
@click.option(
    "--home", envvar="RELAY_HOME", required=True, type=click.Path(path_type=Path, file_okay=False)
)
@json_option
def hop_audit(home: Path, as_json: bool) -> None:
    """List the hop's own audit records."""
    from relay.audit import log
    from relay.audit.formats import format_json_line
    from relay.db import sa_executor
    from relay.hop.store import HopStore

    opened = Home.open(home, "hop")
    store = HopStore.open(opened)
    with store.engine.connect() as conn:
        records = log.records_after(sa_executor(conn), 0)
    for record in records:
        if as_json:
            click.echo(format_json_line(opened.identity.name, record))
        else:
            details = " ".join(f"{k}={v}" for k, v in sorted(record.fields.items()))
            click.echo(f"{record.seq}  {record.time}  {record.type}  {details}")
