"""``relay agent run``: the agent as a service (imports FastAPI and friends only when run)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from relay.cli.common import home_option
from relay.home import Home


@click.command("run")
@home_option
def run(home: Path) -> None:
    """Run the agent service in the foreground: watch agent.inbox, serve the local API.

    Logs go to stderr (never secret values); SIGTERM or SIGINT stops it cleanly (exit 0).
    """
    from inner_agent.daemon import run_agent

    sys.exit(run_agent(Home.open(home, "agent")))
