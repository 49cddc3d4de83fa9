"""``relay demo``: the whole loop in a temporary folder, on embedded defaults, narrated."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path

import click


def _step(text: str) -> None:
    click.secho(f"\n== {text}", bold=True)


def _run(*args: str, expect: int = 0) -> None:
    """Run one relay command in-process, showing it as an operator would type it."""
    from relay.cli import cli

    click.secho("$ relay " + " ".join(args), fg="cyan")
    try:
        cli.main(args=list(args), prog_name="relay")
        status = 0
    except SystemExit as exc:
        status = int(exc.code or 0)
    if status != expect:
        raise click.ClickException(f"demo step failed: relay {' '.join(args)} exited {status}")


@click.command()
@click.option("--keep", is_flag=True, help="Keep the demo folder instead of removing it.")
def demo(keep: bool) -> None:
    """Run the whole loop: init, enroll, trust, put, grant, export, import, get, tamper."""
    root = Path(tempfile.mkdtemp(prefix="relay-demo-"))
    try:
        _loop(root)
        click.secho("\nThe demo ran the whole loop: every step worked.", fg="green", bold=True)
    finally:
        if keep:
            click.echo(f"demo folder kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _loop(root: Path) -> None:
    gw, ag, usb = str(root / "gateway"), str(root / "agent"), str(root / "usb")
    value_file = root / "value.txt"
    value_file.write_text(f"demo-{secrets.token_hex(8)}\n")
    value_file.chmod(0o600)
    click.echo(f"working in {root}")

    _step("1. The connected side: create the outer gateway and its public identity file")
    _run("gateway", "init", "--home", gw, "--name", "hq")
    _run("gateway", "identity", "--home", gw, "--out", str(root / "hq.identity"))

    _step("2. The isolated side: create the inner agent and its enrollment request")
    _run(
        "agent",
        "init",
        "--home",
        ag,
        "--name",
        "plant7",
        "--request-out",
        str(root / "plant7.request"),
    )

    _step("3. Carry the files across and compare fingerprints: enroll and trust")
    _run("gateway", "enroll", "--home", gw, str(root / "plant7.request"))
    _run("agent", "trust", "--home", ag, str(root / "hq.identity"))

    _step("4. Put a secret (from a file, never on the command line) and grant it")
    _run(
        "gateway",
        "secret",
        "put",
        "--home",
        gw,
        "db/plant7/password",
        "--value-file",
        str(value_file),
        "--ttl",
        "30d",
    )
    _run("gateway", "grant", "--home", gw, "plant7", "db/plant7/*")
    _run("gateway", "secret", "list", "--home", gw)

    _step("5. Export a signed, sealed bundle onto the 'USB stick'")
    _run("gateway", "export", "--home", gw, "--to", usb)
    bundle = sorted(Path(usb).glob("*.bundle"))[0]
    _run("bundle", "inspect", str(bundle))

    _step("6. The agent verifies and imports it into its encrypted store")
    _run("agent", "import", "--home", ag, usb)
    _run("agent", "import", "--home", ag, usb)

    _step("7. An application reads the secret")
    _run("agent", "get", "--home", ag, "db/plant7/password")
    _run("agent", "status", "--home", ag)

    _step("8. A tampered bundle is rejected and quarantined; the store is unchanged")
    _run("gateway", "export", "--home", gw, "--to", usb)
    newest = sorted(Path(usb).glob("*.bundle"))[-1]
    data = bytearray(newest.read_bytes())
    data[-1] ^= 0x01
    tampered = root / "tampered" / newest.name
    tampered.parent.mkdir(mode=0o700)
    tampered.write_bytes(bytes(data))
    _run("agent", "import", "--home", ag, str(tampered), expect=1)
    _run("agent", "get", "--home", ag, "db/plant7/password")

    _step("9. Audit flows back: the agent's records, sealed to the gateway, verified, acknowledged")
    back = str(root / "usb-back")
    _run("agent", "audit", "--home", ag)
    _run("agent", "audit", "export", "--home", ag, "--to", back)
    _run("gateway", "import", "--home", gw, back)
    _run("gateway", "audit", "verify", "--home", gw)
    _run("gateway", "audit", "--home", gw, "--agent", "plant7")
    _run("gateway", "export", "--home", gw, "--to", usb)
    _run("agent", "import", "--home", ag, usb)
    _run("agent", "status", "--home", ag)
