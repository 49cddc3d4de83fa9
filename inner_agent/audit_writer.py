"""Service events into the agent's audit chain, written by one background thread in batches.

The API must not wait on the store's write lock (an import holds it for its whole transaction),
so :func:`inner_agent.events.record` only queues; this thread appends what is queued, in order,
many records per transaction, then delivers to the configured sinks. The queue is bounded:
when it is full, producers wait (back-pressure) rather than lose records. Acknowledgements from
the gateway travel through the same queue, so a prune never overtakes the records before it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from inner_agent import events
from inner_agent.audit import AgentAudit
from inner_agent.rawdb import executor, immediate, raw_connection
from relay.audit import log
from relay.audit.chain import next_record, record_from_json, record_to_json
from relay.audit.sinks import sinks_from_settings
from relay.home import Home

MAX_QUEUE = 10_000
MAX_BATCH = 500
GATHER_SECONDS = 0.05  # one transaction per burst, not per event (and less GIL contention)

_log = logging.getLogger("relay.audit")
_ACK = "\x00ack"  # internal queue marker, never an event type


class AuditWriter:
    """Owns the audit-writing thread of ``relay agent run``."""

    def __init__(self, home: Home, written: Callable[[int], None] = lambda _count: None) -> None:
        self.home = home
        self.written = written  # told how many records each committed batch held
        self.audit = AgentAudit(home)
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue(MAX_QUEUE)
        self._thread = threading.Thread(target=self._run, name="relay-audit", daemon=True)
        config = home.config
        self._has_sinks = bool(
            sinks_from_settings(
                str(config.get("audit.jsonl")),
                str(config.get("audit.syslog")),
                str(config.get("audit.syslog_format")),
            )
        )

    def start(self) -> None:
        """Start the writer thread (it holds one store connection for its life)."""
        self._thread.start()

    def sink(self, event_type: str, fields: dict[str, events.Scalar]) -> None:
        """The events hook: log to stderr, queue for the chain."""
        events.log_event(event_type, fields)
        self._queue.put((event_type, fields))

    def acknowledge(self, mark: int) -> None:
        """The gateway acknowledged records up to ``mark`` (pruned after what is queued)."""
        self._queue.put((_ACK, mark))

    def stop(self, timeout: float) -> None:
        """Write what is queued, then stop (at most ``timeout`` seconds)."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        with raw_connection(self.home) as conn:
            execute = executor(conn)
            while True:
                batch = self._next_batch()
                done = batch[-1] is None
                items = [item for item in batch if item is not None]
                try:
                    self._write(conn, execute, items)
                except Exception as exc:  # never lose the service over audit; say so loudly
                    _log.error("audit write failed (%s): %d events", type(exc).__name__, len(items))
                if done:
                    return

    def _next_batch(self) -> list[tuple[str, Any] | None]:
        """The next event and whatever follows within :data:`GATHER_SECONDS`."""
        batch = [self._queue.get()]
        until = time.monotonic() + GATHER_SECONDS
        while len(batch) < MAX_BATCH and batch[-1] is not None:
            left = until - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=left))
            except queue.Empty:
                break
        return batch

    def _write(self, conn: Any, execute: Any, items: list[tuple[str, Any]]) -> None:
        records = [(t, f) for t, f in items if t != _ACK]
        if records:
            with immediate(conn):
                appended = _append_all(execute, records)
            self.written(appended)
            if self._has_sinks:
                self.audit.deliver()
        for event_type, mark in items:
            if event_type == _ACK:
                self.audit.acknowledge(int(mark))


def _append_all(execute: Any, records: list[tuple[str, Any]]) -> int:
    """:func:`relay.audit.log.append` for many records in one transaction: the previous record
    is read once, then chained in memory (same records, without re-reading each one back).
    Returns how many were appended."""
    rows = execute("SELECT record FROM audit_log ORDER BY seq DESC LIMIT 1", ())
    prev = record_from_json(rows[0][0]) if rows else None
    appended = 0
    for event_type, fields in records:
        try:
            record = next_record(
                prev, log.SESSION_ID, event_type, fields, datetime.now(UTC), time.monotonic_ns()
            )
        except (ValueError, TypeError) as exc:  # checked at record(); never drop the batch
            _log.error("audit record %s refused: %s", event_type, exc)
            continue
        execute(
            "INSERT INTO audit_log (seq, hash, type, time, record) VALUES (?, ?, ?, ?, ?)",
            (record.seq, record.hash, record.type, record.time, record_to_json(record)),
        )
        prev = record
        appended += 1
    return appended
