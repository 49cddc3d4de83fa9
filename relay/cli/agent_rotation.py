"""``relay agent rotate``: rotate a secret on the isolated side (local executor + escrow), or
ask the gateway to (a request in the return stream)."""

from __future__ import annotations

from pathlib import Path

import click

from relay.cli.common import echo_json, home_option, json_option, now
from relay.home import Home


@click.command()
@home_option
@json_option
@click.option(
    "--recover", "recover_only", is_flag=True, help="Only resolve interrupted local rotations."
)
@click.argument("path", required=False)
def rotate(home: Path, path: str | None, as_json: bool, recover_only: bool) -> None:
    """Rotate PATH now: through a matching [[rotation.executor]] (the new value is escrowed to
    the gateway in the next audit export), or else by a request to the gateway. An interrupted
    local rotation is resolved first (docs/rotation.md)."""
    from inner_agent.rotation import recover, request_rotation, rotate_locally
    from relay.codes import ROTATION_FAILED, ROTATION_TIMEOUT, USAGE_CODE
    from relay.errors import RelayError, UsageError
    from relay.paths import check_path

    opened = Home.open(home, "agent")
    if path is not None:
        check_path(path)
    elif not recover_only:
        raise UsageError("give a PATH, or --recover", code=USAGE_CODE)
    resolved = recover(opened, now())
    for result in resolved:
        click.echo(f"interrupted rotation of {result.path}: {result.status}", err=True)
    if recover_only or path is None:
        if as_json:
            echo_json([{"path": r.path, **_local_json(r)} for r in resolved])
        return
    local = rotate_locally(opened, path, now())
    if local is not None:
        if as_json:
            echo_json({"path": path, "mode": "local", **_local_json(local)})
        elif local.status == "applied":
            click.echo(f"rotated {path} locally: version {local.version} (escrow queued)")
        if local.status != "applied":
            code = ROTATION_TIMEOUT if local.status == "timeout" else ROTATION_FAILED
            raise RelayError(
                f"the executor did not rotate {path} ({local.detail}); the old value stays",
                code=code,
            )
        return
    request = request_rotation(opened, path, "manual", now())
    if as_json:
        echo_json({"path": path, "mode": "request", "request": request})
        return
    if request is None:
        click.echo(f"a rotation of {path} is already requested")
    else:
        click.echo(f"requested rotation of {path} from the gateway (with the next audit export)")


def _local_json(result: object) -> dict[str, object]:
    return {k: v for k, v in vars(result).items() if k != "path"}
