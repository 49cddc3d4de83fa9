"""The ``relay`` command line.

Sub-command groups live in their own modules and are imported only when invoked, so that
``relay agent get`` in a script loop does not pay for SQLAlchemy, FastAPI or paramiko.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import click

from relay.errors import RelayError

# name -> "module:attribute"; each module defines one click command or group.
SUBCOMMANDS: dict[str, str] = {
    "gateway": "relay.cli.gateway:gateway",
    "agent": "relay.cli.agent:agent",
    "bundle": "relay.cli.bundle:bundle",
    "demo": "relay.cli.demo:demo",
    "hop": "relay.cli.hop:hop",
    "diode": "relay.cli.diode:diode",
    "doctor": "relay.cli.doctor:doctor",
    "kit": "relay.cli.kit:kit",
}


CALLER_UMASK = [0o022]  # the umask relay was started with, for the commands relay runs


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use, and which turns every
    error into one line on stderr and an exit status (no traceback ever reaches a user)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)  # noqa: S101 - programmer error
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RelayError as exc:
            click.echo(f"relay: error: {exc.diagnostics()}", err=True)
            ctx.exit(exc.exit_status)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("relay: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            # A bug. Never print the message or traceback: either could carry a secret value.
            click.echo(
                f"relay: error: internal: {type(exc).__name__} (a bug; please report)", err=True
            )
            if os.environ.get("RELAY_DEBUG") == "1":
                import traceback

                traceback.print_exc(limit=-3)
            ctx.exit(70)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="relay")
def cli() -> None:
    """relay: store-and-forward secrets across air gaps, diodes and DMZs."""
    CALLER_UMASK[0] = os.umask(0o077)  # every file relay creates is private unless it says so


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``relay`` console script."""
    return cli.main(args=argv, prog_name="relay")
