"""The consumption step of ``relay demo``: a build step gets the secret in its environment
(``relay agent exec``) and a legacy config file is rendered from a template
(``relay agent render``); neither puts the value on a command line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click

BUILD_STEP = 'echo "build step sees DB_PASSWORD (${#DB_PASSWORD} characters)"'
TEMPLATE = """[database]
password = {{ secret("db/plant7/password") }}
version = {{ secret_meta("db/plant7/password").version }}
"""


def show_consumption(
    root: Path, ag: str, step: Callable[[str], None], run: Callable[..., None]
) -> None:
    """Run ``relay agent exec`` (a real child process) and ``relay agent render``."""
    step("7b. Use it without storing it: a build step's environment, a legacy config file")
    argv = ["agent", "exec", "--home", ag, "--env", "DB_PASSWORD=db/plant7/password"]
    argv += ["--", "sh", "-c", BUILD_STEP]
    click.secho("$ relay " + " ".join(argv[:-1]) + f" '{BUILD_STEP}'", fg="cyan")
    sys.stdout.flush()
    status = subprocess.run([sys.executable, "-m", "relay", *argv], check=False).returncode
    if status != 0:
        raise click.ClickException(f"demo step failed: relay agent exec exited {status}")
    template = root / "legacy.conf.tmpl"
    template.write_text(TEMPLATE)
    out = root / "run" / "legacy.conf"
    out.parent.mkdir(mode=0o700)
    run("agent", "render", "--home", ag, str(template), "--out", str(out), "--mode", "0600")
    click.echo(f"{out.name}: mode 0600, {out.stat().st_size} bytes, written atomically")
