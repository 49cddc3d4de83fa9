"""``relay gateway policy …`` and ``relay gateway rotate``: rotation at the gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from relay.cli.common import duration, echo_json, echo_table, home_option, json_option, now
from relay.cli.gateway import _audit, _open, gateway
from relay.durations import format_duration
from relay.paths import check_path, check_pattern


@gateway.group()
def policy() -> None:
    """Rotation policies: how often secrets rotate and what new values look like."""


@policy.command("set")
@home_option
@click.argument("pattern")
@click.option("--rotate-every", help="Rotate matching secrets this often (e.g. 30d).")
@click.option("--length", type=int, default=32, show_default=True, help="Generated length.")
@click.option("--charset", default="alnum", show_default=True, help="alnum, hex, …, a+b, chars:…")
@click.option("--overlap", help="How long the replaced version stays `previous`.")
@click.option("--max-offline-age", help="Longest an agent may serve it without a fresh bundle.")
@click.option("--fail-closed", is_flag=True, help="Refuse it, rather than serve it, when stale.")
def policy_set(
    home: Path,
    pattern: str,
    rotate_every: str | None,
    length: int,
    charset: str,
    overlap: str | None,
    max_offline_age: str | None,
    fail_closed: bool,
) -> None:
    """Create or replace the rotation policy of PATTERN (e.g. 'db/plant7/*')."""
    from outer_gateway.policies import Policy, set_policy
    from relay.generate import charset_of, check_length

    check_pattern(pattern)
    charset_of(charset)
    check_length(length)
    made = Policy(
        pattern,
        duration(rotate_every, "") if rotate_every else None,
        length,
        charset,
        duration(overlap, "") if overlap else None,
        duration(max_offline_age, "") if max_offline_age else None,
        fail_closed,
    )
    opened, store = _open(home)
    new = set_policy(store, made, now())
    _audit(opened, store).record(
        "policy.set",
        pattern=pattern,
        rotate_every=made.rotate_every,
        length=length,
        charset=charset,
        overlap=made.overlap,
        max_offline_age=made.max_offline_age,
        fail_closed=fail_closed,
    )
    click.echo(f"{'added' if new else 'replaced'} policy {pattern}")


@policy.command("list")
@home_option
@json_option
def policy_list(home: Path, as_json: bool) -> None:
    """List rotation policies."""
    from outer_gateway.policies import list_policies

    _, store = _open(home)
    policies = list_policies(store)
    if as_json:
        echo_json([p.to_json() for p in policies])
        return

    def shown(seconds: int | None) -> str:
        return "-" if seconds is None else format_duration(seconds)

    echo_table(
        ("PATTERN", "ROTATE EVERY", "LENGTH", "CHARSET", "OVERLAP", "MAX OFFLINE", "FAIL CLOSED"),
        [
            (
                p.pattern,
                shown(p.rotate_every),
                p.length,
                p.charset,
                shown(p.overlap),
                shown(p.max_offline_age),
                "yes" if p.fail_closed else "no",
            )
            for p in policies
        ],
    )


@policy.command("rm")
@home_option
@click.argument("pattern")
def policy_rm(home: Path, pattern: str) -> None:
    """Remove the rotation policy of PATTERN."""
    from outer_gateway.policies import remove_policy

    opened, store = _open(home)
    remove_policy(store, pattern)
    _audit(opened, store).record("policy.removed", pattern=pattern)
    click.echo(f"removed policy {pattern}")


@gateway.command()
@home_option
@json_option
@click.argument("path")
def rotate(home: Path, path: str, as_json: bool) -> None:
    """Rotate PATH now: a new generated version (its policy's length and charset); the next
    bundle carries it, and the old version stays `previous` for the overlap."""
    from outer_gateway.rotation import rotate_path

    opened, store = _open(home)
    done = rotate_path(opened, store, check_path(path), now())
    if as_json:
        echo_json({"path": path, "version": done.version, "replaced": done.replaced})
        return
    click.echo(f"rotated {path}: version {done.version}")


@gateway.group()
def rotation() -> None:
    """Rotations reported back by agents (requests, escrows, outcomes)."""


@rotation.command("status")
@home_option
@json_option
@click.option("--agent", "agent_name", help="Only this agent.")
def rotation_status(home: Path, as_json: bool, agent_name: str | None) -> None:
    """Every rotation item received from agents and what the gateway did with it."""
    from outer_gateway.rotation_inbox import rotation_log
    from relay.cli.common import format_time

    _, store = _open(home)
    rows = rotation_log(store, agent_name)
    if as_json:
        echo_json([r.to_json() for r in rows])
        return
    echo_table(
        ("RECEIVED", "AGENT", "KIND", "PATH", "AGENT SAYS", "GATEWAY", "VERSION"),
        [
            (
                format_time(r.received_at),
                r.agent,
                r.kind,
                r.path,
                _agent_says(r),
                r.result or "pending",
                "-" if r.result_version is None else r.result_version,
            )
            for r in rows
        ],
    )


def _agent_says(row: Any) -> str:
    """What the agent reported, in a few words (never a value, never hook output)."""
    if row.kind == "hook":
        status = "" if row.exit_status is None else f" exit {row.exit_status}"
        return f"hook {row.hook} {row.status}{status} (v{row.version})"
    if row.kind == "outcome" and row.version is not None:
        return f"{row.status} v{row.version}"
    if row.status or row.reason:
        return str(row.status or row.reason)
    return f"v{row.version} from v{row.base}" if row.base is not None else "-"
