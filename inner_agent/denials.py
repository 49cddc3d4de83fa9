"""Unauthenticated denials, aggregated: a count per interval plus a sample.

Any local process can send the API requests without a token (or with a wrong client secret, or
from a uid that is not allowed). Recording each as its own audit record would let it grow the
audit log by thousands of records a second and wedge the return stream. So a denial that no
authenticated app is behind goes through :func:`note`: the first of each (event type, reason) in
an interval is recorded in full, as a sample; the others in that interval are only counted, and
the count is recorded once, as an ``unauthenticated.denied`` event (fields ``denied_type``,
``reason``, ``count``, ``interval_s``), when the interval is over (:func:`flush`, called by the
service every interval and when it stops). At most two records per (type, reason) per interval.

Denials of an authenticated app (``forbidden``, ``not_found``…) are not aggregated: an app is
accountable, and its denials are rate-limited by its own token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from inner_agent import events

INTERVAL = 60.0
SUMMARY_TYPE = "unauthenticated.denied"

Record = Callable[..., None]


@dataclass
class _Window:
    number: int
    suppressed: int = 0


class DenialAggregator:
    """Samples and counts denials per (event type, reason) and interval."""

    def __init__(
        self,
        record: Record | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = INTERVAL,
    ) -> None:
        self._record = record
        self.clock = clock
        self.interval = interval
        self._windows: dict[tuple[str, str], _Window] = {}
        self._lock = threading.Lock()

    def note(self, event_type: str, reason: str, **sample: events.Scalar) -> None:
        """One unauthenticated denial: recorded in full if it is the interval's first of its
        kind, counted otherwise."""
        window = self._window_number()
        key = (event_type, reason)
        with self._lock:
            current = self._windows.get(key)
            if current is not None and current.number == window:
                current.suppressed += 1
                return
            self._windows[key] = _Window(window)
        if current is not None and current.suppressed:
            self._summary(key, current.suppressed)
        self._emit(event_type, reason=reason, **sample)

    def flush(self, force: bool = False) -> None:
        """Record the counts of intervals that are over (``force``: also the current one)."""
        window = self._window_number()
        due: list[tuple[tuple[str, str], int]] = []
        with self._lock:
            for key, state in self._windows.items():
                if state.suppressed and (force or state.number != window):
                    due.append((key, state.suppressed))
                    state.suppressed = 0
        for key, count in due:
            self._summary(key, count)

    def _summary(self, key: tuple[str, str], count: int) -> None:
        self._emit(
            SUMMARY_TYPE,
            denied_type=key[0],
            reason=key[1],
            count=count,
            interval_s=int(self.interval),
        )

    def _emit(self, event_type: str, **fields: events.Scalar) -> None:
        (self._record or events.record)(event_type, **fields)

    def _window_number(self) -> int:
        return int(self.clock() // self.interval)
