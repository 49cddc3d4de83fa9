"""The pre-staged switch in ``relay demo``: a successor shipped ahead with its activation time,
switched by the agent on its own clock with no new bundle."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

# Seconds; the demo's agent judges activates_at (whole seconds) with agent.clock_skew = 1s, so
# the switch comes 6 to 7 s after the put. Before it, the export, the import and a read of the
# pending version must be done: 0.6 s on a loaded 2-core machine, but 4 s left only 2 to 3.
SWITCH_IN = 8


def prestaged_switch(
    root: Path,
    gw: str,
    usb: str,
    url: str,
    read: Callable[[str], Any],
    run: Callable[..., None],
    step: Callable[[str], None],
) -> None:
    """Stage version 3 to activate in a few seconds, export once, and watch it switch."""
    step("12. A pre-staged successor: shipped ahead, switched on the agent's clock, no bundle")
    staged = root / "value3.txt"
    staged.write_text(f"demo-{secrets.token_hex(8)}-v3\n")
    path = "db/plant7/password"
    run("gateway", "secret", "put", "--home", gw, path, "--value-file", str(staged),
        "--activates-at", f"{SWITCH_IN}s")  # fmt: skip
    run("gateway", "secret", "list", "--home", gw)
    run("gateway", "export", "--home", gw, "--to", usb)
    started = time.monotonic()
    pending: Any = {}
    while time.monotonic() - started < 10:
        pending = _tolerant(read, f"{url}/v1/secrets/{path}?version=pending")
        if pending.get("version") == 3:
            break
        time.sleep(0.25)
    if pending.get("version") != 3:
        raise click.ClickException("demo step failed: the pre-staged version was not visible")
    click.echo("pending version 3 is visible beforehand")
    while time.monotonic() - started < 10 + SWITCH_IN:
        current = read(f"{url}/v1/secrets/{path}")
        if current["version"] == 3:
            previous = read(f"{url}/v1/secrets/{path}?version=previous")
            click.echo(
                f"switched to version 3 with no new bundle: {current['value']} "
                f"(previous: version {previous['version']})"
            )
            return
        time.sleep(0.25)
    raise click.ClickException("demo step failed: the pre-staged version did not switch")


def _tolerant(read: Callable[[str], Any], url: str) -> Any:
    """``read(url)``, or ``{}`` while the API answers 404 (the bundle is not applied yet)."""
    import urllib.error

    try:
        return read(url)
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
        return {}
