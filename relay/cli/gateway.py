"""``relay gateway …``: the connected side."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from relay.cli.common import (
    COMMAND_META,
    HOME_META,
    config_group,
    duration,
    echo_json,
    echo_table,
    format_time,
    home_option,
    json_option,
    make_transport_options,
    now,
    read_value,
    transport_options,
    warn_if_unwrapped,
)
from relay.codes import BAD_FILE, NO_DESTINATION, TOO_LARGE
from relay.errors import RelayError
from relay.home import Home
from relay.identity import read_identity_file
from relay.paths import check_path, check_pattern

if TYPE_CHECKING:
    from outer_gateway.audit import GatewayAudit
    from outer_gateway.store import GatewayStore


class _RefusalsAudited(click.Group):
    """Every gateway command refused with a reason code (a wrong root key, an unknown agent, a
    bad policy…) is also recorded in the gateway's own audit chain as ``operator.refused``:
    the command and the code, never the values it was given."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RelayError as exc:
            home, command = ctx.meta.get(HOME_META), ctx.meta.get(COMMAND_META)
            if isinstance(home, Path) and isinstance(command, str):
                from outer_gateway.audit import record_refusal

                # the path from "gateway" on (the program's own name varies)
                record_refusal(home, command.partition(" ")[2], exc.code)
            raise


@click.group(cls=_RefusalsAudited)
def gateway() -> None:
    """The outer gateway: secrets, enrolled agents, grants and export."""


gateway.add_command(config_group("gateway"))


def _open(home: Path) -> tuple[Home, GatewayStore]:
    from outer_gateway.store import GatewayStore

    opened = Home.open(home, "gateway")
    return opened, GatewayStore.open(opened)


def _audit(opened: Home, store: GatewayStore) -> GatewayAudit:
    from outer_gateway.audit import GatewayAudit

    return GatewayAudit(opened, store.engine)


@gateway.command()
@home_option
@click.option("--name", required=True, help="This gateway's name (a-z, 0-9, . _ -).")
def init(home: Path, name: str) -> None:
    """Create a gateway home: keys, encrypted store, settings."""
    from outer_gateway.store import GatewayStore

    created = Home.create(home, "gateway", name)
    store = GatewayStore.open(created)
    _audit(created, store).record("key.created", key_id=created.identity.key_id, name=name)
    store.close()
    click.echo(f"gateway {name} initialised in {home}")
    click.echo(f"fingerprint: {created.identity.fingerprint}")
    warn_if_unwrapped(created)


@gateway.command()
@home_option
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Where to write the public identity file.",
)
def identity(home: Path, out: Path) -> None:
    """Write this gateway's public identity file, to carry to the agents."""
    from outer_gateway.keyring import load
    from relay.transport.folder import write_atomic

    opened = Home.open(home, "gateway")
    ring = load(opened)  # with a root (spec §15), agents pin the root, not the online key
    document = (
        opened.identity.to_document(opened.secrets.keys) if ring is None else ring.root_document()
    )
    write_atomic(out.parent, out.name, document, mode=0o644)
    click.echo(f"wrote {out}")
    if ring is not None:
        from relay.trust.documents import root_fingerprint

        click.echo(f"root fingerprint: {root_fingerprint(ring.root.key)}")
        return
    click.echo(f"fingerprint: {opened.identity.fingerprint}")


@gateway.command()
@home_option
@json_option
@click.argument("request_file", type=click.Path(path_type=Path, dir_okay=False))
def enroll(home: Path, request_file: Path, as_json: bool) -> None:
    """Enroll an agent from its enrollment request file."""
    request = read_identity_file(request_file, "agent")
    opened, store = _open(home)
    new = store.enroll(request, now())
    if new:
        _audit(opened, store).record(
            "agent.enrolled", agent_name=request.name, key_id=request.key_id
        )
    if as_json:
        echo_json({"agent": request.name, "fingerprint": request.fingerprint, "new": new})
        return
    click.echo(f"{'enrolled' if new else 'already enrolled'}: agent {request.name}")
    click.echo(f"fingerprint: {request.fingerprint}  (compare with the agent's, out of band)")


@gateway.group(invoke_without_command=True)
@click.option(
    "--home", "home", envvar="RELAY_HOME", type=click.Path(path_type=Path, file_okay=False)
)
@json_option
@click.pass_context
def agents(ctx: click.Context, home: Path | None, as_json: bool) -> None:
    """List enrolled agents (or manage one: `agents revoke NAME`)."""
    if ctx.invoked_subcommand is not None:
        return
    if home is None:  # as --home everywhere else: the gateway's default home
        from relay.home_location import default_home

        home = default_home("gateway")
    from outer_gateway.agent_keys import revoked_agents

    _, store = _open(home)
    listed = store.agents()
    revoked = revoked_agents(store)
    if as_json:
        echo_json(
            [
                {
                    "name": a.identity.name,
                    "fingerprint": a.identity.fingerprint,
                    "key_id": a.identity.key_id,
                    "enrolled_at": a.enrolled_at,
                    "last_seq": a.last_seq,
                    "last_export": a.last_export,
                    "revoked": a.identity.name in revoked,
                }
                for a in listed
            ]
        )
        return
    echo_table(
        ("NAME", "FINGERPRINT", "LAST SEQ", "LAST EXPORT"),
        [
            (a.identity.name, a.identity.fingerprint, a.last_seq, format_time(a.last_export))
            for a in listed
        ],
    )


@gateway.group()
def secret() -> None:
    """Manage the secrets the gateway holds."""


@secret.command("put")
@home_option
@click.argument("path")
@click.argument("stdin", required=False, metavar="[-]")
@click.option(
    "--value-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Read the value from this file.",
)
@click.option("--ttl", help="Expire the secret this long from now (e.g. 24h).")
@click.option("--raw", is_flag=True, help="Keep a trailing newline in the value.")
@click.option(
    "--activates-at",
    help="Pre-stage: the version becomes current at this time (RFC 3339 or a duration from now).",
)
def secret_put(
    home: Path,
    path: str,
    stdin: str | None,
    value_file: Path | None,
    ttl: str | None,
    raw: bool,
    activates_at: str | None,
) -> None:
    """Store a new version of PATH from --value-file or '-' (stdin)."""
    if stdin not in (None, "-"):
        raise click.UsageError(
            "the value is never given on the command line: use - or --value-file"
        )
    check_path(path)
    opened, store = _open(home)
    cap = int(opened.config.get("limits.max_secret_bytes"))
    value = read_value(value_file, stdin == "-", raw, cap)
    expires = now() + duration(ttl, "") if ttl else None
    from relay.cli.gateway_versions import put_labelled

    put_labelled(opened, store, path, value, expires, activates_at)


@secret.command("import")
@home_option
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--ttl", help="Expire the imported secrets this long from now.")
def secret_import(home: Path, file: Path, ttl: str | None) -> None:
    """Bulk import from a JSON object or a .env file of path -> value."""
    from outer_gateway.secret_files import parse_secret_file
    from relay.errors import UsageError
    from relay.transport.folder import read_capped

    opened, store = _open(home)
    data = read_capped(file, int(opened.config.get("limits.max_bundle_bytes")))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{file} is not UTF-8 text", code=BAD_FILE) from None
    values = parse_secret_file(text)
    cap = int(opened.config.get("limits.max_secret_bytes"))
    for path, value in values.items():
        if len(value) > cap:
            raise UsageError(f"the value of {path} is over limits.max_secret_bytes", code=TOO_LARGE)
    expires = now() + duration(ttl, "") if ttl else None
    from outer_gateway.policies import list_policies, policy_for
    from outer_gateway.rotation import overlap_of
    from outer_gateway.versions import drop_stale_labels

    policies = list_policies(store)
    default = overlap_of(opened, None)

    def overlap(path: str) -> int:  # as `secret put`: the path's policy, or rotation.overlap
        policy = policy_for(policies, path) if policies else None
        return default if policy is None else overlap_of(opened, policy)

    written, same = store.import_secrets(values, expires, now(), overlap)
    drop_stale_labels(store)  # labels a concurrent change made inconsistent
    _audit(opened, store).record(
        "secret.imported", file=str(file), count=len(values), written=written
    )
    click.echo(f"imported {len(values)} secrets: {written} new or changed, {same} unchanged")


@secret.command("list")
@home_option
@json_option
@click.option("--all", "include_deleted", is_flag=True, help="Include removed secrets.")
def secret_list(home: Path, as_json: bool, include_deleted: bool) -> None:
    """List secrets: metadata only (with previous and pending versions), never values."""
    from relay.cli.gateway_versions import list_labelled

    opened, store = _open(home)
    list_labelled(opened, store, include_deleted, as_json)


@secret.command("rm")
@home_option
@click.argument("path")
def secret_rm(home: Path, path: str) -> None:
    """Remove PATH; the removal reaches agents as a tombstone in their next bundle."""
    opened, store = _open(home)
    version = store.remove_secret(check_path(path), now())
    from outer_gateway.versions import drop_versions

    drop_versions(store, path)
    _audit(opened, store).record("secret.removed", path=path, version=version)
    click.echo(f"removed {path} (tombstone version {version})")


@gateway.command()
@home_option
@click.argument("agent")
@click.argument("pattern")
def grant(home: Path, agent: str, pattern: str) -> None:
    """Let AGENT receive the secrets whose paths match PATTERN (e.g. 'db/plant7/*')."""
    opened, store = _open(home)
    new = store.grant(agent, check_pattern(pattern))
    if new:
        _audit(opened, store).record("grant.added", agent_name=agent, pattern=pattern)
    click.echo(f"{'granted' if new else 'already granted'}: {agent} {pattern}")


@gateway.command()
@home_option
@click.argument("agent")
@click.argument("pattern")
def revoke(home: Path, agent: str, pattern: str) -> None:
    """Remove a grant; the agent drops those secrets on its next bundle."""
    opened, store = _open(home)
    store.revoke(agent, pattern)
    _audit(opened, store).record("grant.revoked", agent_name=agent, pattern=pattern)
    click.echo(f"revoked: {agent} {pattern}")


@gateway.command()
@home_option
@json_option
@click.option("--agent", help="Only this agent's grants.")
def grants(home: Path, as_json: bool, agent: str | None) -> None:
    """List grants."""
    _, store = _open(home)
    rows = store.grants(agent)
    if as_json:
        echo_json([{"agent": a, "pattern": p} for a, p in rows])
        return
    echo_table(("AGENT", "PATTERN"), rows)


@gateway.command()
@home_option
@json_option
@transport_options
@click.option("--to", "to", help="Folder, sftp://… or udp://… destination (default export.to).")
@click.option("--agent", help="Only this agent (default: every agent with grants).")
@click.option("--valid-for", help="How long the bundles stay valid (default export.valid_for).")
@click.option("--full", is_flag=True, help="Full bundles, no deltas (repairs any agent).")
def export(
    home: Path,
    as_json: bool,
    to: str | None,
    agent: str | None,
    valid_for: str | None,
    full: bool,
    identity_file: Path | None,
    known_hosts: Path | None,
) -> None:
    """Write one sealed bundle per agent to --to, and print where they went.

    A bundle is a delta on the newest bundle the agent acknowledged, or its full state (no
    acknowledgement known, every export.full_every bundles, or --full)."""
    from outer_gateway.dispatch import dispatch
    from relay.errors import UsageError

    opened, store = _open(home)
    to = to or str(opened.config.get("export.to"))
    if not to:
        raise UsageError("pass --to or set export.to", code=NO_DESTINATION)
    validity = duration(valid_for, str(opened.config.get("export.valid_for")))
    options = make_transport_options(opened, identity_file, known_hosts)
    written = dispatch(opened, store, to, options, validity, now, agent, full)
    if as_json:
        echo_json(written)
        return
    if not written:
        click.echo("nothing to export: no agent has grants", err=True)
    for item in written:
        click.echo(item["path"])


def _register_more() -> None:
    """Commands kept in their own modules (imported here so ``relay gateway --help`` lists them)."""
    import relay.cli.gateway_audit
    import relay.cli.gateway_keys
    import relay.cli.gateway_rotation
    import relay.cli.gateway_run  # noqa: F401
    from relay.cli.backup import add_backup_commands

    add_backup_commands(gateway, "gateway")


_register_more()
