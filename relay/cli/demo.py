"""``relay demo``: the whole loop in a temporary folder, on embedded defaults, narrated."""

from __future__ import annotations

import contextlib
import io
import json
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import click

from relay.cli.demo_consume import show_consumption


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
    """Run the whole loop: init, enroll, trust, put, grant, export, import, get, tamper, and the
    agent as a service with its local API."""
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

    show_consumption(root, ag, _step, _run)  # 7b. exec and render

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

    _service(root, gw, ag, usb)


def _capture(*args: str) -> str:
    """Run one relay command in-process like :func:`_run` and return what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        _run(*args)
    click.echo(out.getvalue(), nl=False)
    return out.getvalue().split("\n", 1)[1]  # after the echoed command line


def _service(root: Path, gw: str, ag: str, usb: str) -> None:
    _step("10. The agent as a service: it watches the USB folder and serves a local API")
    _run("agent", "config", "set", "--home", ag, "agent.inbox", usb)
    _run("agent", "config", "set", "--home", ag, "api.listen", "127.0.0.1:0")
    # A pre-staged version is current from activates_at - agent.clock_skew (default 5m): a
    # narrow leeway lets step 12 show the switch in seconds.
    _run("agent", "config", "set", "--home", ag, "agent.clock_skew", "1s")
    doc = json.loads(
        _capture("agent", "app", "add", "--home", ag, "billing", "--allow", "db/plant7/*", "--json")
    )
    log_path = root / "agent-service.log"
    click.secho(f"$ relay agent run --home {ag} &   (log: {log_path})", fg="cyan")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relay", "agent", "run", "--home", ag],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        url = _wait_listening(proc, log_path)
        click.echo(f"listening on {url}")
        token = _post_form(
            f"{url}/v1/oauth2/token",
            {
                "grant_type": "client_credentials",
                **{k: doc[k] for k in ("client_id", "client_secret")},
            },
        )["access_token"]
        click.secho(  # credentials and tokens go to curl on stdin (-K -), never in argv
            f"$ … | curl -s -K - -d grant_type=client_credentials {url}/v1/oauth2/token",
            fg="cyan",
        )
        click.secho(f"$ … | curl -s -K - {url}/v1/secrets/db/plant7/password", fg="cyan")
        secret = _get_json(f"{url}/v1/secrets/db/plant7/password", token)
        click.echo(f"version {secret['version']}: {secret['value']}")

        _step("11. A new version crosses the gap; the service applies it from the folder")
        new_value = root / "value2.txt"
        new_value.write_text(f"demo-{secrets.token_hex(8)}-v2\n")
        _run(
            "gateway",
            "secret",
            "put",
            "--home",
            gw,
            "db/plant7/password",
            "--value-file",
            str(new_value),
        )
        _run("gateway", "export", "--home", gw, "--to", usb)
        started = time.monotonic()
        while True:
            secret = _get_json(f"{url}/v1/secrets/db/plant7/password", token)
            if secret["version"] >= 2 or time.monotonic() - started > 10:
                break
            time.sleep(0.05)
        if secret["version"] < 2:
            raise click.ClickException("demo step failed: the new version was not applied")
        click.echo(
            f"version {secret['version']} readable over HTTP "
            f"{time.monotonic() - started:.2f}s after the export: {secret['value']}"
        )
        from relay.cli.demo_rotation import prestaged_switch

        prestaged_switch(root, gw, usb, url, lambda u: _get_json(u, token), _run, _step)
    finally:
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=15)
    click.echo("the service's audit events:")
    for line in log_path.read_text().splitlines():
        if " event " in line:
            click.echo("  " + line.split(" event ", 1)[1])
    if status != 0:
        raise click.ClickException(f"demo step failed: relay agent run exited {status}")


def _wait_listening(proc: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"api listening on (http://[0-9.]+:\d+)", log_path.read_text())
        if found:
            return found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise click.ClickException(f"demo step failed: the agent service did not start ({log_path})")


def _post_form(url: str, fields: dict[str, str]) -> Any:
    data = urllib.parse.urlencode(fields).encode()
    with urllib.request.urlopen(url, data=data, timeout=10) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


def _get_json(url: str, token: str) -> Any:
    request = urllib.request.Request(  # noqa: S310 - a loopback http:// URL we built
        url, headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return json.loads(response.read())
