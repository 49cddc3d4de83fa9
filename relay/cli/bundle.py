"""``relay bundle …``: look at bundle files without keys."""

from __future__ import annotations

from pathlib import Path

import click

from relay.cli.common import echo_json, format_time, json_option


@click.group()
def bundle() -> None:
    """Inspect bundle files."""


@bundle.command()
@json_option
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
def inspect(file: Path, as_json: bool) -> None:
    """Print a bundle's header (nothing is decrypted or verified)."""
    from relay.bundle.envelope import parse_envelope
    from relay.config import SETTINGS
    from relay.transport.folder import read_capped

    data = read_capped(file, int(SETTINGS["limits.max_bundle_bytes"].default))
    envelope = parse_envelope(data)
    doc = envelope.header.to_json()
    doc.update(size=len(data), bundle_id=envelope.bundle_id, verified=False)
    if as_json:
        echo_json(doc)
        return
    h = envelope.header
    click.echo(f"file:       {file}")
    click.echo(f"kind:       {h.kind} (format v{h.v})")
    click.echo(f"sender:     {h.sender} (key {h.sender_key})")
    click.echo(f"recipient:  {h.recipient} (key {h.recipient_key})")
    click.echo(f"seq:        {h.seq}")
    click.echo(f"created:    {format_time(h.created)}")
    click.echo(f"expires:    {format_time(h.expires)}")
    click.echo(f"size:       {len(data)} bytes (payload {h.payload_len})")
    click.echo(f"bundle id:  {envelope.bundle_id}")
    click.echo("note:       header shown unverified; `relay agent import` verifies")
