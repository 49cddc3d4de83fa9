"""Pieces every ``relay`` command shares: the home option, output helpers and the config group."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import click

from relay.codes import EMPTY_VALUE, TOO_LARGE, USAGE_CODE
from relay.durations import parse_duration
from relay.errors import UsageError
from relay.home import Home

if TYPE_CHECKING:
    from relay.transport import TransportOptions

F = TypeVar("F", bound=Callable[..., Any])


def home_option(func: F) -> F:
    """``--home DIR`` (or ``RELAY_HOME``): the private folder of this gateway or agent; without
    either, the side's default home (:mod:`relay.home_location`)."""
    return click.option(
        "--home",
        "home",
        envvar="RELAY_HOME",
        callback=_default_home,
        type=click.Path(path_type=Path, file_okay=False),
        help="The home folder (or RELAY_HOME; default: /var/lib/relay/SIDE for a service, "
        "$XDG_DATA_HOME/relay/SIDE for a user).",
    )(func)


def _default_home(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path:
    home = value if value is not None else _side_default(ctx)
    # Remembered for the whole invocation (ctx.meta is shared by every context of the chain):
    # a gateway command's refusal is audited in that home (relay/cli/gateway.py).
    ctx.meta[HOME_META] = home
    ctx.meta[COMMAND_META] = ctx.command_path
    return home


HOME_META = "relay.home"
COMMAND_META = "relay.command"


def _side_default(ctx: click.Context) -> Path:
    from relay.home_location import SIDES, default_home

    here: click.Context | None = ctx
    while here is not None:
        if here.info_name in SIDES:
            return default_home(here.info_name)
        here = here.parent
    raise click.UsageError("pass --home DIR (or set RELAY_HOME)", ctx)


def json_option(func: F) -> F:
    """``--json``: machine-readable output instead of a table."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


def transport_options(func: F) -> F:
    """``--identity-file`` and ``--known-hosts`` for ``sftp://`` locations."""
    func = click.option(
        "--known-hosts",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Known-hosts file pinning the SFTP server's host key.",
    )(func)
    return click.option(
        "--identity-file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Private key for the SFTP login.",
    )(func)


def import_options(func: F) -> F:
    """``--home``, ``--json``, the SFTP flags, ``--delete-after-import`` and ``LOCATIONS...``."""
    func = click.argument("locations", nargs=-1, required=True)(func)
    func = click.option(
        "--delete-after-import",
        is_flag=True,
        help="Remove each imported or duplicate file from the source.",
    )(func)
    return home_option(json_option(transport_options(func)))


class ImportOutcome(Protocol):
    """What both sides' importers report per file."""

    @property
    def name(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def code(self) -> str | None: ...

    @property
    def message(self) -> str: ...


def report_import(
    outcomes: Sequence[ImportOutcome],
    as_json: bool,
    to_json: Callable[[Any], dict[str, Any]],
    success_line: Callable[[Any], str | None],
) -> None:
    """Print an import's outcomes (rejections as one line each on stderr) and exit 1 if any
    file was rejected."""
    if as_json:
        echo_json([to_json(o) for o in outcomes])
    for o in outcomes:
        if o.status == "rejected":
            click.echo(f"relay: rejected: {o.name}: {o.code}: {o.message}", err=True)
        elif as_json:
            continue
        elif o.status == "duplicate":
            click.echo(f"skipped {o.name}: duplicate (already applied)")
        elif o.status == "skipped":
            if o.code != "wrong_recipient":  # a shared medium: other sites' bundles, quietly
                click.echo(f"skipped {o.name}: {o.message}")
        else:
            line = success_line(o)
            if line:
                click.echo(line)
    if not outcomes and not as_json:
        click.echo("no bundles found", err=True)
    if any(o.status == "rejected" for o in outcomes):
        sys.exit(1)


def make_transport_options(
    home: Home | None,
    identity_file: Path | None,
    known_hosts: Path | None,
    delete_after_import: bool = False,
) -> TransportOptions:
    """Transport options from flags, falling back to the home's ``sftp.*`` and ``diode.*``
    settings."""
    from relay.transport import TransportOptions

    extra: dict[str, str] = {}
    if home is not None:
        identity_file = identity_file or _setting_path(home, "sftp.identity_file")
        known_hosts = known_hosts or _setting_path(home, "sftp.known_hosts")
        extra = {
            name: str(home.config.get(f"diode.{name}"))
            for name in ("fec_overhead", "rate", "repeat")
        }
    return TransportOptions(
        identity_file=identity_file,
        known_hosts=known_hosts,
        delete_after_import=delete_after_import,
        extra=extra,
    )


def _setting_path(home: Home, key: str) -> Path | None:
    from relay.config import SETTINGS

    if key not in SETTINGS:
        return None
    value = home.config.get(key)
    return Path(value) if value else None


def now() -> int:
    """The current UTC time in whole seconds."""
    return int(time.time())


def duration(text: str | None, default: str) -> int:
    """Seconds of ``text`` (or of ``default``)."""
    return parse_duration(text if text is not None else default)


def echo_json(value: Any) -> None:
    """Print ``value`` as one JSON document."""
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a plain aligned table (no colours: output is often piped)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def format_time(epoch: int | None) -> str:
    """RFC 3339 UTC text of ``epoch`` ("-" for none)."""
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def config_group(side: str) -> click.Group:
    """``relay SIDE config set|get|unset|show`` over the home's ``relay.toml``."""

    @click.group("config")
    def group() -> None:
        """Read and change this home's settings (relay.toml)."""

    @group.command("set")
    @home_option
    @click.argument("key")
    @click.argument("value")
    def set_(home: Path, key: str, value: str) -> None:
        """Set KEY to VALUE."""
        opened = Home.open(home, side)
        parsed = opened.config.set(key, value)
        record_config_change(opened, key)
        click.echo(f"{key} = {parsed!r}")

    @group.command("get")
    @home_option
    @click.argument("key")
    def get(home: Path, key: str) -> None:
        """Print the value of KEY."""
        click.echo(Home.open(home, side).config.get(key))

    @group.command("unset")
    @home_option
    @click.argument("key")
    def unset(home: Path, key: str) -> None:
        """Return KEY to its default."""
        opened = Home.open(home, side)
        opened.config.unset(key)
        record_config_change(opened, key)

    @group.command("show")
    @home_option
    @json_option
    def show(home: Path, as_json: bool) -> None:
        """Print every setting, marking defaults."""
        items = Home.open(home, side).config.items()
        if as_json:
            echo_json({key: value for key, value, _ in items})
            return
        for key, value, is_default in items:
            click.echo(f"{key} = {value!r}{'  (default)' if is_default else ''}")

    return group


def record_config_change(home: Home, key: str) -> None:
    """Audit a settings change (the key only: values may hold credentials)."""
    if home.side == "agent":
        from inner_agent.audit import AgentAudit

        AgentAudit(home).record("config.changed", setting=key)
        return
    from outer_gateway.audit import GatewayAudit
    from outer_gateway.store import GatewayStore

    store = GatewayStore.open(home)
    GatewayAudit(home, store.engine).record("config.changed", setting=key)
    store.close()


def read_value(value_file: Path | None, from_stdin: bool, raw: bool, cap: int) -> bytes:
    """A secret value from a file or stdin (never argv); one trailing newline is dropped unless
    ``raw``."""
    if (value_file is None) == (not from_stdin):
        raise UsageError("give the value with --value-file FILE or '-' for stdin", code=USAGE_CODE)
    if value_file is not None:
        from relay.transport.folder import read_capped

        try:
            data = read_capped(value_file, cap)
        except OSError as exc:
            raise UsageError(f"cannot read {value_file}: {exc.strerror}", code=USAGE_CODE) from None
    else:
        data = sys.stdin.buffer.read(cap + 2)
    if not raw:
        data = data.removesuffix(b"\n").removesuffix(b"\r")
    if len(data) > cap:
        raise UsageError(f"the value is over limits.max_secret_bytes ({cap})", code=TOO_LARGE)
    if not data:
        raise UsageError("the value is empty", code=EMPTY_VALUE)
    return data


def warn_if_unwrapped(home: Home) -> None:
    """One line on stderr when ``init`` stored the keys without a passphrase."""
    if home.protection == "none":
        click.echo(
            "relay: warning: keys stored unwrapped (no passphrase): anyone with a copy of "
            f"{home.path} can read them; set RELAY_PASSPHRASE_FILE or the systemd credential "
            "relay-passphrase before init to wrap them",
            err=True,
        )
