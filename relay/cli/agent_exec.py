"""``relay agent exec`` and ``relay agent render``: secrets used without being stored.

Secrets come from the agent's store (``--home``) or from a running agent's API (``--api URL`` or
``--api-socket PATH``, credentials from ``--credentials FILE`` or ``RELAY_CLIENT_ID`` with
``RELAY_CLIENT_SECRET``/``RELAY_CLIENT_SECRET_FILE``: never from the command line).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from relay.cli import CALLER_UMASK
from relay.codes import NO_CREDENTIALS, USAGE_CODE
from relay.errors import UsageError

if TYPE_CHECKING:
    from inner_agent.secret_source import SecretSource

F = TypeVar("F", bound=Callable[..., Any])


def source_options(func: F) -> F:
    """``--home`` or ``--api``/``--api-socket`` with ``--credentials``."""
    for option in reversed(
        [
            click.option(
                "--home",
                envvar="RELAY_HOME",
                type=click.Path(path_type=Path, file_okay=False),
                help="Read from this agent home's store (or RELAY_HOME).",
            ),
            click.option("--api", "api_url", help="Read from a running agent's API at this URL."),
            click.option(
                "--api-socket",
                type=click.Path(path_type=Path, dir_okay=False),
                help="Read from a running agent's API on this unix socket.",
            ),
            click.option(
                "--credentials",
                type=click.Path(path_type=Path, dir_okay=False),
                help="File with client_id=… and client_secret=… lines (or RELAY_CLIENT_*).",
            ),
        ]
    ):
        func = option(func)
    return func


def open_source(
    home: Path | None,
    api_url: str | None,
    api_socket: Path | None,
    credentials: Path | None,
    via: str,
) -> SecretSource:
    """The store of ``home``, or the API."""
    if api_url or api_socket:
        from inner_agent.secret_source import ApiSource
        from relay.client import Client

        client_id, client_secret = _credentials(credentials)
        client = (
            Client(
                api_url, client_id=client_id, client_secret=client_secret, unix_socket=api_socket
            )
            if not (api_url and api_socket)
            else None
        )
        if client is None:
            raise UsageError("give --api or --api-socket, not both", code=USAGE_CODE)
        return ApiSource(client)
    if home is None:
        raise UsageError("give --home (or RELAY_HOME), --api or --api-socket", code=USAGE_CODE)
    from inner_agent.secret_source import StoreSource, cli_auditor
    from relay.home import Home

    opened = Home.open(home, "agent")
    return StoreSource(opened, cli_auditor(opened, via))


def _credentials(path: Path | None) -> tuple[str, str]:
    from relay.client import ID_ENV, SECRET_ENV, SECRET_FILE_ENV

    values: dict[str, str] = {}
    if path is not None:
        values = _read_credentials(path)
    client_id = values.get("client_id") or os.environ.get(ID_ENV, "")
    secret = values.get("client_secret") or os.environ.get(SECRET_ENV, "")
    if not secret and os.environ.get(SECRET_FILE_ENV):
        secret = _read_text(Path(os.environ[SECRET_FILE_ENV])).strip()
    if not client_id or not secret:
        raise UsageError(
            f"API credentials missing: --credentials FILE, or {ID_ENV} with {SECRET_ENV} "
            f"or {SECRET_FILE_ENV}",
            code=NO_CREDENTIALS,
        )
    return client_id, secret


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", code=NO_CREDENTIALS) from None


def _read_credentials(path: Path) -> dict[str, str]:
    """``client_id=…``/``client_secret=…`` lines, or the JSON ``relay agent app add --json``
    prints."""
    import json

    text = _read_text(path)
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            raise UsageError(f"{path} is not valid JSON", code=NO_CREDENTIALS) from None
        return {k: str(v) for k, v in doc.items() if k in ("client_id", "client_secret")}
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip().lower()] = value.strip()
    return values


def _audit_event(source: SecretSource, via: str) -> Callable[..., None]:
    """record(event_type, **fields) into the home's audit chain (API mode: stderr log only)."""
    from inner_agent.secret_source import StoreSource

    if isinstance(source, StoreSource):
        from inner_agent.audit import AgentAudit

        audit = AgentAudit(source.home)

        def record(event_type: str, **fields: Any) -> None:
            audit.record(event_type, **fields, via=via)

        return record
    from inner_agent import events

    return events.record


@click.command(
    "exec",
    context_settings={"allow_interspersed_args": False},
)
@source_options
@click.option(
    "--env", "env_items", multiple=True, metavar="VAR=PATH", help="Variable from a secret."
)
@click.option(
    "--env-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Template rendered in memory into VAR=VALUE lines.",
)
@click.option(
    "--restart-on-change", is_flag=True, help="Supervise CMD; restart it on new versions."
)
@click.option("--stop-signal", default="TERM", show_default=True, help="Signal that stops CMD.")
@click.option("--grace", default="10s", show_default=True, help="Wait before SIGKILL.")
@click.option("--poll", default="2s", show_default=True, help="How often versions are checked.")
@click.option("--debounce", default="1s", show_default=True, help="Quiet time before a restart.")
@click.option("--max-restarts", default=5, show_default=True, help="Restarts allowed per window.")
@click.option("--restart-window", default="60s", show_default=True, help="The rate limit's window.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(
    home: Path | None,
    api_url: str | None,
    api_socket: Path | None,
    credentials: Path | None,
    env_items: tuple[str, ...],
    env_file: Path | None,
    restart_on_change: bool,
    stop_signal: str,
    grace: str,
    poll: str,
    debounce: str,
    max_restarts: int,
    restart_window: str,
    command: tuple[str, ...],
) -> None:
    """Run CMD with secrets in its environment: relay agent exec --env VAR=PATH -- CMD [ARGS]…

    A missing, expired, stale (fail-closed) or ungranted secret stops before CMD starts. Without
    --restart-on-change CMD replaces relay (same pid, signals and exit status are CMD's own).
    """
    from inner_agent.consume_config import parse_seconds, parse_signal
    from inner_agent.exec_env import parse_env_options
    from inner_agent.exec_runner import ExecSpec

    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("give the command after --", code=USAGE_CODE)
    template = None
    if env_file is not None:
        from inner_agent.render import read_template

        template = read_template(env_file)
    spec = ExecSpec(
        argv=command,
        pairs=parse_env_options(env_items),
        template=template,
        stop_signal=parse_signal(stop_signal),
        grace=parse_seconds(grace),
        poll=parse_seconds(poll),
        debounce=parse_seconds(debounce),
        max_restarts=max_restarts,
        window=parse_seconds(restart_window),
    )
    source = open_source(home, api_url, api_socket, credentials, "exec")
    if restart_on_change:
        _supervise(spec, source)
    _replace(spec, source)


def _replace(spec: Any, source: SecretSource) -> None:
    from inner_agent.exec_env import child_environment, find_command, resolve
    from inner_agent.exec_runner import replace_process

    resolved = resolve(source, spec.pairs, spec.template)
    env = child_environment(os.environ, resolved)
    find_command(spec.argv[0], env)  # a missing command is reported before the audit record
    _audit_event(source, "exec")("exec.started", command=spec.label, versions=resolved.describe())
    sys.stdout.flush()
    sys.stderr.flush()
    replace_process(spec.argv, env, CALLER_UMASK[0])


def _supervise(spec: Any, source: SecretSource) -> None:
    from inner_agent.exec_runner import exit_like, run_foreground

    status = run_foreground(spec, source, _audit_event(source, "exec"), CALLER_UMASK[0])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_like(status))


@click.command("render")
@source_options
@click.argument("template", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--mode", default="0600", show_default=True, help="Permissions of the output.")
@click.option("--owner", help="USER[:GROUP] of the output (needs the right to chown).")
def render(
    home: Path | None,
    api_url: str | None,
    api_socket: Path | None,
    credentials: Path | None,
    template: Path,
    out: Path,
    mode: str,
    owner: str | None,
) -> None:
    """Render TEMPLATE with secrets into --out, atomically and only when it changes.

    The template may call secret("PATH") and secret_meta("PATH") and nothing else. Prefer an
    output on a tmpfs such as /run: the file holds the values in clear.
    """
    from inner_agent.render import (
        parse_mode,
        parse_owner,
        read_template,
        render_template,
        write_if_changed,
    )

    file_mode = parse_mode(mode)
    owner_ids = parse_owner(owner) if owner else None
    text = read_template(template)
    source = open_source(home, api_url, api_socket, credentials, "render")
    rendered = render_template(text, source)
    written = write_if_changed(out, rendered.content, file_mode, owner_ids)
    _audit_event(source, "render")(
        "template.rendered", out=str(out), versions=rendered.fingerprint(), written=written
    )
    click.echo(f"{'wrote' if written else 'unchanged'} {out}")
