"""What ``relay agent exec --restart-on-change`` tells its service manager over the notification
protocol (:mod:`relay.sdnotify`).

Supervising, relay is the unit's main process and speaks for it: a ``RELAY_EVENT=`` per
supervision event (the audit's facts: ``exec.started``, ``exec.restarted``,
``exec.restart_failed``, ``exec.restart_delayed``, ``exec.killed``, ``exec.exited``), ``READY=1``
once CMD has first been started (relay cannot know when CMD itself serves: as ``Type=exec``),
``RELAY_CHECK=`` after each look at the versions CMD uses, and ``STOPPING=1`` when a stop signal
is forwarded or CMD exits. CMD does not inherit ``NOTIFY_SOCKET`` (ADR 0020): a restart of CMD is
not the service stopping, and its own ``READY=1``/``STOPPING=1`` would tell the manager so.
Without ``--restart-on-change`` none of this runs: CMD replaces relay, becomes the main process
and keeps the variable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from inner_agent.service_status import ServiceStatus
from relay.sdnotify import Notifier


class SupervisionStatus:
    """Audits through ``record``, then tells the manager (see the module docstring)."""

    def __init__(self, notifier: Notifier, record: Callable[..., None]) -> None:
        self.notifier = notifier
        self.checks = 0
        self._audit = record
        self._events = ServiceStatus(notifier)
        self._ready = False
        self._stopping = False

    def record(self, event_type: str, **fields: Any) -> None:
        """``record(event_type, **fields)``: the audit record first, then the notification."""
        self._audit(event_type, **fields)
        self._events.event(event_type, dict(fields))
        if event_type == "exec.started" and not self._ready:
            self._ready = True
            status = f"running {fields.get('command')} (pid {fields.get('pid')})"
            self.notifier.send(READY="1", STATUS=status)
        elif event_type == "exec.exited":
            self.stopping()

    def checked(self) -> None:
        """One more pass of the supervision loop (versions compared, restart decided)."""
        self.checks += 1
        self.notifier.send(RELAY_CHECK=str(self.checks))

    def stopping(self) -> None:
        if not self._stopping:
            self._stopping = True
            self.notifier.send(STOPPING="1", STATUS="stopping")
