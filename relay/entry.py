"""The ``relay`` console script: ``relay agent get`` starts without importing click.

Scripts call ``relay agent get`` in loops, so its start-up is product. :func:`main` recognises
the plain forms of that command (``agent get [--home DIR | --home=DIR] PATH``, ``RELAY_HOME``,
or neither: the agent's default home, as the click option resolves it) and runs
:func:`inner_agent.get_command.get_value`, the very function the click command runs, with the
CLI's own rendering of errors. Anything else (help, unknown or repeated options, a ``--home``
that is not an existing folder, another command) goes to the click CLI unchanged, which then
prints its own usage errors.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``relay`` console script and of ``python -m relay``."""
    args = sys.argv[1:] if argv is None else argv
    parsed = parse_agent_get(args, os.environ.get("RELAY_HOME"))
    if parsed is None:
        from relay.cli import main as click_main

        return click_main(argv)
    home, path = parsed
    if home is None:  # what `--home`'s click callback does without --home or RELAY_HOME
        from relay.home_location import default_home

        home = default_home("agent")
    return sys.exit(run_agent_get(home, path))


def parse_agent_get(args: list[str], env_home: str | None) -> tuple[Path | None, str] | None:
    """``(home, path)`` for a plain ``agent get`` (home ``None``: the default home); ``None``
    for anything click must judge."""
    if args[:2] != ["agent", "get"]:
        return None
    home, path = env_home or None, None
    seen_home = False
    rest = iter(args[2:])
    for arg in rest:
        if arg == "--home" or arg.startswith("--home="):
            if seen_home:
                return None
            seen_home = True
            home = arg[len("--home=") :] if "=" in arg else next(rest, None)
            if home is None or home.startswith("-"):
                return None
        elif arg.startswith("-") or path is not None:
            return None
        else:
            path = arg
    if path is None or (home is not None and not (home and Path(home).is_dir())):
        return None
    return (None if home is None else Path(home)), path


def run_agent_get(home: Path, path: str) -> int:
    """Print the value and a newline; an error as the CLI prints it. Returns the exit status."""
    os.umask(0o077)  # as the click group does for every command
    try:
        from inner_agent.get_command import get_value
        from relay.errors import RelayError

        try:
            value = get_value(home, path)
            out = sys.stdout.buffer
            out.write(value + b"\n")
            out.flush()
        except RelayError as exc:
            _error(f"relay: error: {exc.diagnostics()}")
            return exc.exit_status
    except KeyboardInterrupt:
        _error("relay: interrupted")
        return 130
    except Exception as exc:
        # A bug. Never print the message or traceback: either could carry a secret value.
        _error(f"relay: error: internal: {type(exc).__name__} (a bug; please report)")
        if os.environ.get("RELAY_DEBUG") == "1":
            import traceback

            traceback.print_exc(limit=-3)
        return 70
    return 0


def _error(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
