"""What ``relay agent run`` hosts for consumers: the ``[[hooks]]`` runner and the ``[[exec]]``
children of ``relay.toml``. Built before the service starts serving (a bad table stops the start
with ``bad_config``), told about every applied import, stopped with the service."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from inner_agent import events
from inner_agent.consume_config import ExecTable, read_tables
from inner_agent.exec_runner import ExecChild, ExecSpec, Supervisor
from inner_agent.hook_reports import HookReporter
from inner_agent.hooks import STATE_FILE, HookRunner, HookState
from inner_agent.secret_source import StoreSource
from relay.config import CONFIG_NAME
from relay.home import Home


class Consumers:
    """The hook runner (if there are hooks) and one supervisor thread per ``[[exec]]``."""

    def __init__(self, home: Home) -> None:
        hooks, tables = read_tables(home.path / CONFIG_NAME)
        self.home = home
        self.hooks: HookRunner | None = None
        if hooks:
            source = StoreSource(home, _auditor("hook"))
            state = HookState(home.path / STATE_FILE)
            self.hooks = HookRunner(
                hooks,
                state,
                lambda: store_versions(home),
                source,
                events.record,
                report=HookReporter(home),
            )
        self.children = [ExecChild(_supervisor(home, table)) for table in tables]

    def start(self) -> None:
        if self.hooks is not None:
            self.hooks.start()
        for child in self.children:
            child.start()

    def chained(self, first: Callable[[Any], None]) -> Callable[[Any], None]:
        """The inbox's callback: ``first`` (the service), then :meth:`after_import`."""

        def both(outcome: Any) -> None:
            first(outcome)
            self.after_import(outcome)

        return both

    def after_import(self, outcome: Any) -> None:
        """The inbox's callback: wake the hooks after an applied bundle."""
        if self.hooks is not None and getattr(outcome, "status", None) == "applied":
            self.hooks.notify()

    def stop(self) -> None:
        for child in self.children:
            child.stop()
        if self.hooks is not None:
            self.hooks.stop()


def store_versions(home: Home) -> dict[str, int]:
    """``path -> version`` of every secret in the store (no value is read)."""
    from inner_agent.rawdb import raw_connection

    with raw_connection(home) as conn:
        return {str(p): int(v) for p, v in conn.execute("SELECT path, version FROM secrets")}


def _auditor(via: str) -> Any:
    def record(_conn: Any, event_type: str, fields: dict[str, Any]) -> None:
        events.record(event_type, **fields, via=via)

    return record


def _supervisor(home: Home, table: ExecTable) -> Supervisor:
    template = None
    if table.env_template is not None:
        from inner_agent.render import read_template

        template = read_template(table.env_template)
    spec = ExecSpec(
        argv=table.argv,
        pairs=table.env,
        template=template,
        stop_signal=table.stop_signal,
        grace=table.grace,
        poll=table.poll,
        debounce=table.debounce,
        max_restarts=table.max_restarts,
        window=table.window,
        name=table.name,
        watch=table.restart_on_change,
    )
    source = StoreSource(home, _auditor("exec"))
    return Supervisor(spec, source, events.record, os.environ)
