"""Whether the agent's intake is healthy: repeated rejections or failing inbox scans make the
service ``degraded`` in ``GET /v1/health`` (with the reason) and in ``GET /metrics``.

An attacker who can drop files (or diode datagrams) cannot stop later bundles from being applied,
but the operator must still see that junk arrives: ``REPEATED`` or more rejections within
``WINDOW_SECONDS`` are ``repeated_rejections``; an exception escaping an inbox scan (a bug) is
``scan_failed`` until a scan succeeds again.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

REPEATED = 3
WINDOW_SECONDS = 900.0
REPEATED_REJECTIONS = "repeated_rejections"
SCAN_FAILED = "scan_failed"


class IntakeHealth:
    """Counts recent rejections and scan failures (thread-safe; times from ``clock``)."""

    def __init__(
        self,
        clock: Callable[[], float],
        repeated: int = REPEATED,
        window: float = WINDOW_SECONDS,
    ) -> None:
        self.clock = clock
        self.repeated = repeated
        self.window = window
        self._rejections: deque[float] = deque()
        self._scan_error: str | None = None
        self.scan_failures = 0
        self._lock = threading.Lock()

    def rejected(self) -> None:
        """One file was rejected."""
        with self._lock:
            self._rejections.append(self.clock())
            self._trim()

    def scan_failed(self, what: str) -> None:
        """A scan raised (``what``: the exception's type name, never a value)."""
        with self._lock:
            self._scan_error = what
            self.scan_failures += 1

    def scan_ok(self) -> None:
        """A scan completed."""
        with self._lock:
            self._scan_error = None

    def recent_rejections(self) -> int:
        with self._lock:
            self._trim()
            return len(self._rejections)

    def degraded(self) -> str | None:
        """The reason the intake is degraded, or ``None``."""
        with self._lock:
            self._trim()
            if self._scan_error is not None:
                return f"{SCAN_FAILED}: {self._scan_error}"
            if len(self._rejections) >= self.repeated:
                return (
                    f"{REPEATED_REJECTIONS}: {len(self._rejections)} in the last "
                    f"{int(self.window)} s"
                )
            return None

    def _trim(self) -> None:
        horizon = self.clock() - self.window
        while self._rejections and self._rejections[0] < horizon:
            self._rejections.popleft()
