"""What ``relay agent run`` tells its service manager over the notification protocol
(:mod:`relay.sdnotify`): ready with the API's addresses, each inbox pass, each event, each
batch of records committed to the audit chain (``RELAY_AUDITED=`` counts them), stopping."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

from inner_agent import events
from relay.sdnotify import Notifier


class ServiceStatus:
    """What the service tells its manager (see the module docstring)."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.scans = 0
        self.audited = 0
        self._lock = threading.Lock()

    def ready(self, listening: list[str]) -> None:
        self.notifier.send(READY="1", STATUS="serving", RELAY_LISTEN=" ".join(listening))

    def scanned(self) -> None:
        with self._lock:
            self.scans += 1
            count = self.scans
        self.notifier.send(STATUS=f"inbox pass {count} done", RELAY_SCAN=str(count))

    def audit_written(self, count: int) -> None:
        """The audit writer committed a batch of ``count`` records."""
        with self._lock:
            self.audited += count
            total = self.audited
        self.notifier.send(RELAY_AUDITED=str(total))

    def after_scan(self, first: Callable[[], None]) -> Callable[[], None]:
        """``first``, then :meth:`scanned`: the inbox worker's success callback."""

        def both() -> None:
            first()
            self.scanned()

        return both

    def event(self, event_type: str, fields: dict[str, events.Scalar]) -> None:
        line = f"{event_type} {json.dumps(fields, sort_keys=True)}"
        if not self.notifier.send(STATUS=f"last event: {event_type}", RELAY_EVENT=line):
            self.notifier.send(STATUS=f"last event: {event_type}", RELAY_EVENT=event_type)

    def stopping(self) -> None:
        self.notifier.send(STOPPING="1", STATUS="stopping")
