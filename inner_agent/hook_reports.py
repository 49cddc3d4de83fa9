"""Change hooks' runs travel back to the gateway as ``hook`` rotation items (docs/rotation.md).

A hook acts because the ``path@version`` set it watches changed; each attempt (a success, a
failure, a time-out; retries included) becomes one item per new ``path@version`` that set off
the run, at most :data:`MAX_PER_RUN` per attempt, with the hook's name, its result (``ok``,
``failed``, ``timeout``) and a command's exit status. Never the hook's output, never a value.
Items are queued in one transaction with their audit records (``rotation.hook``) and ride in
the return stream until acknowledged (:mod:`inner_agent.rotation_outbox`). Reporting can fail
(a busy store): that is logged and never stops the hooks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from inner_agent.consume_config import HookSpec
from inner_agent.hook_actions import TIMEOUT, ActionResult
from relay.audit.record import FieldValue
from relay.home import Home

MAX_PER_RUN = 16
COMMAND_ACTIONS = ("run", "systemctl")

_log = logging.getLogger("relay.hooks")
Report = Callable[[HookSpec, frozenset[str], "frozenset[str] | None", ActionResult], None]


def outcome_of(action: str, result: ActionResult) -> tuple[str, int | None]:
    """``(result, exit status)`` of one attempt, as the ``hook`` item carries them."""
    if result.ok:
        return "ok", 0 if action in COMMAND_ACTIONS else None
    if result.reason == TIMEOUT:
        return "timeout", None
    reason = result.reason or ""
    code = reason.removeprefix("exit_")
    if reason.startswith("exit_") and code.isdigit() and int(code) <= 255:
        return "failed", int(code)
    return "failed", None


def triggering(matching: frozenset[str], last: frozenset[str] | None) -> list[tuple[str, int]]:
    """The new ``(path, version)`` pairs of ``matching`` since ``last``, sorted, at most
    :data:`MAX_PER_RUN`."""
    pairs = []
    for item in sorted(matching - (last or frozenset())):
        path, _, version = item.rpartition("@")
        if version.isdigit():
            pairs.append((path, int(version)))
    return pairs[:MAX_PER_RUN]


class HookReporter:
    """The :data:`Report` callback of :class:`inner_agent.hooks.HookRunner` for one home."""

    def __init__(self, home: Home, clock: Callable[[], float] = time.time) -> None:
        self.home = home
        self.clock = clock

    def __call__(
        self,
        hook: HookSpec,
        matching: frozenset[str],
        last: frozenset[str] | None,
        result: ActionResult,
    ) -> None:
        pairs = triggering(matching, last)
        if not pairs:
            return
        try:
            self._queue(hook, pairs, *outcome_of(hook.action, result))
        except Exception as exc:  # the hooks go on; the audit record of the run is there
            _log.warning("hook %s: reporting the run failed: %s", hook.name, type(exc).__name__)

    def _queue(
        self, hook: HookSpec, pairs: list[tuple[str, int]], outcome: str, status: int | None
    ) -> None:
        from inner_agent.audit import AgentAudit
        from inner_agent.rawdb import executor, immediate, raw_connection
        from inner_agent.rotation_outbox import add_items

        name = "".join(c if c.isprintable() else "?" for c in hook.name)[:64] or "hook"
        now = int(self.clock())
        entries = []
        for path, version in pairs:
            fields: dict[str, FieldValue] = {
                "path": path,
                "version": version,
                "hook": name,
                "result": outcome,
                "exit": status,
            }
            entries.append(("rotation.hook", fields, {"kind": "hook", **fields}))
        with raw_connection(self.home) as conn:
            execute = executor(conn)
            with immediate(conn):
                add_items(execute, entries, now)
        AgentAudit(self.home).deliver()
