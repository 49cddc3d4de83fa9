"""``relay agent app add|list|rm``: applications allowed to read secrets over the local API."""

from __future__ import annotations

from pathlib import Path

import click

from relay.cli.common import echo_json, echo_table, format_time, home_option, json_option, now
from relay.home import Home


@click.group("app")
def app() -> None:
    """Register the applications that may read secrets through the local API."""


@app.command("add")
@home_option
@json_option
@click.argument("name")
@click.option(
    "--allow",
    "patterns",
    multiple=True,
    required=True,
    help="A path pattern this app may read (db/plant7/*, app/**); repeat for more.",
)
def add(home: Path, name: str, patterns: tuple[str, ...], as_json: bool) -> None:
    """Register NAME; prints its client_id and client_secret (shown only this once)."""
    from inner_agent.apps import add_app
    from inner_agent.store import AgentStore

    opened = Home.open(home, "agent")
    store = AgentStore.open(opened)
    try:
        creds = add_app(store, name, list(patterns), now())
    finally:
        store.close()
    _audit(opened, "app.added", name, creds.client_id, allow=",".join(sorted(set(patterns))))
    if as_json:
        echo_json(
            {"name": name, "client_id": creds.client_id, "client_secret": creds.client_secret}
        )
        return
    click.echo(f"app {name} registered; the client secret is shown only now:")
    click.echo(f"client_id: {creds.client_id}")
    click.echo(f"client_secret: {creds.client_secret}")


@app.command("list")
@home_option
@json_option
def list_(home: Path, as_json: bool) -> None:
    """List registered apps and what they may read (never secrets)."""
    from inner_agent.apps import list_apps
    from inner_agent.store import AgentStore

    store = AgentStore.open(Home.open(home, "agent"))
    try:
        apps = list_apps(store)
    finally:
        store.close()
    if as_json:
        echo_json(
            [
                {
                    "name": a.name,
                    "client_id": a.client_id,
                    "allow": list(a.patterns),
                    "created_at": a.created_at,
                }
                for a in apps
            ]
        )
        return
    echo_table(
        ("NAME", "CLIENT_ID", "ALLOW", "CREATED"),
        [(a.name, a.client_id, ",".join(a.patterns), format_time(a.created_at)) for a in apps],
    )


@app.command("rm")
@home_option
@click.argument("name")
def rm(home: Path, name: str) -> None:
    """Remove NAME; its tokens stop working at once."""
    from inner_agent.apps import remove_app
    from inner_agent.store import AgentStore

    opened = Home.open(home, "agent")
    store = AgentStore.open(opened)
    try:
        client_id = remove_app(store, name)
    finally:
        store.close()
    _audit(opened, "app.removed", name, client_id)
    click.echo(f"removed app {name}")


def _audit(home: Home, event_type: str, name: str, client_id: str, **extra: str) -> None:
    """One audit record of an app change: the name and registration id, never the secret."""
    from inner_agent.audit import AgentAudit
    from relay.cli.agent import _who

    AgentAudit(home).record(event_type, app=name, client_id=client_id, **extra, **_who())
