"""``relay doctor --home H [--json]``: check a gateway, agent or hop home (see
:mod:`relay.doctor`). Exit status 0 when all is well, 1 with warnings, 2 with a failure."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path

import click

from relay.cli.common import echo_json, home_option, json_option


@click.command()
@home_option
@json_option
def doctor(home: Path, as_json: bool) -> None:
    """Check a home: keys, store integrity, trust, clock, folders, audit, sinks, disk, quarantine.

    One line per check (ok / warn / fail, with the fix); nothing is changed."""
    from relay.doctor import examine, exit_status

    findings = examine(home, int(time.time()))
    if as_json:
        echo_json({"home": str(home), "findings": [asdict(f) for f in findings]})
    else:
        for finding in findings:
            click.echo(finding.line())
    sys.exit(exit_status(findings))
