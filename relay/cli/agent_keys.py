"""``relay agent key …``: this agent's own key pair."""

from __future__ import annotations

from pathlib import Path

import click

from relay.cli.common import home_option
from relay.home import Home


@click.group("key")
def key() -> None:
    """This agent's key pair: rotate it without a visit."""


@key.command("rotate")
@home_option
def key_rotate(home: Path) -> None:
    """Make a new key pair and ask the gateway, in the return stream, to seal to it."""
    from inner_agent.agent_keys import request_rotation

    opened = Home.open(home, "agent")
    new_key_id = request_rotation(opened)
    click.echo(f"new key {new_key_id} requested (current key {opened.identity.key_id})")
    click.echo("carry the next audit export to the gateway; the agent switches keys when a")
    click.echo("bundle sealed to the new key arrives")
