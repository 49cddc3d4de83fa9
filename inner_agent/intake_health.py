"""Whether the agent's intake is healthy, and how much of a flood goes to the audit chain.

Repeated rejections or failing inbox scans make the
service ``degraded`` in ``GET /v1/health`` (with the reason) and in ``GET /metrics``.

An attacker who can drop files (or diode datagrams) cannot stop later bundles from being applied,
but the operator must still see that junk arrives: ``REPEATED`` or more rejections within
``WINDOW_SECONDS`` are ``repeated_rejections``; an exception escaping an inbox scan (a bug) is
``scan_failed`` until a scan succeeds again.

The audit volume a flood can cause is capped too (:class:`RejectionBudget`): the first
``AUDIT_PER_WINDOW`` rejections of each window are recorded one by one, the rest as one summary
record with their count, so nothing hides from the audit and nothing grows it without bound.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

REPEATED = 3
WINDOW_SECONDS = 900.0
AUDIT_PER_WINDOW = 100  # rejections audited one by one per window; the rest are counted
AUDIT_WINDOW_SECONDS = 60.0
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

    def scan_failed(self, what: str) -> bool:
        """A scan raised (``what``: the exception's type name, never a value); True when the
        previous scan had not failed (worth one audit record, not one per retry)."""
        with self._lock:
            new = self._scan_error is None
            self._scan_error = what
            self.scan_failures += 1
            return new

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


class RejectionBudget:
    """How many rejections may be audited one by one in the current window (thread-safe)."""

    def __init__(
        self,
        clock: Callable[[], float],
        per_window: int = AUDIT_PER_WINDOW,
        window: float = AUDIT_WINDOW_SECONDS,
    ) -> None:
        self.clock = clock
        self.per_window = per_window
        self.window = window
        self._started = clock()
        self._used = 0
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, reason: str) -> bool:
        """Whether this rejection gets its own record; if not, it is counted for the summary."""
        with self._lock:
            self._roll()
            if self._used < self.per_window:
                self._used += 1
                return True
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return False

    def summary(self) -> dict[str, int] | None:
        """Counts by reason of the rejections not recorded one by one, once their window has
        ended (then forgotten); ``None`` when there is nothing to report yet."""
        with self._lock:
            if not self._suppressed or self.clock() - self._started < self.window:
                return None
            counts, self._suppressed = self._suppressed, {}
            self._roll()
            return counts

    def _roll(self) -> None:
        now = self.clock()
        if now - self._started >= self.window and not self._suppressed:
            self._started = now
            self._used = 0
