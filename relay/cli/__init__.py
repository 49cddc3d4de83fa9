"""The ``relay`` command line.

Sub-command groups live in their own modules and are imported only when invoked, so that
``relay agent get`` in a script loop does not pay for SQLAlchemy, FastAPI or paramiko.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from relay.errors import RelayError

# name -> "module:attribute"; each module defines one click command or group.
SUBCOMMANDS: dict[str, str] = {
    "gateway": "relay.cli.gateway:gateway",
    "agent": "relay.cli.agent:agent",
    "bundle": "relay.cli.bundle:bundle",
    "demo": "relay.cli.demo:demo",
    "diode": "relay.cli.diode:diode",
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

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


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="relay")
def cli() -> None:
    """relay: store-and-forward secrets across air gaps, diodes and DMZs."""


def main(argv: list[str] | None = None) -> Any:
    """Entry point: runs the CLI and turns every error into one line and an exit status."""
    os.umask(0o077)
    try:
        return cli.main(args=argv, prog_name="relay", standalone_mode=False)
    except RelayError as exc:
        click.echo(f"relay: error: {exc.diagnostics()}", err=True)
        sys.exit(exc.exit_status)
    except click.exceptions.Abort:
        click.echo("relay: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("relay: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        # A bug. Never print the message or traceback: either could carry a secret value.
        click.echo(f"relay: error: internal: {type(exc).__name__} (a bug; please report)", err=True)
        if os.environ.get("RELAY_DEBUG") == "1":
            import traceback

            traceback.print_exc(limit=-3)
        sys.exit(70)
