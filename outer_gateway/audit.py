"""The gateway's audit: its own chained log, the records received from agents, and delivery of
both to the SIEM sinks (agent records tagged with the agent's name)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Engine

from relay.audit import log
from relay.audit.chain import AuditRecord, record_from_json
from relay.audit.record import FieldValue
from relay.audit.sinks import (
    AuditSink,
    Delivery,
    QueuedRecord,
    deliver_all,
    report_failures,
    sinks_from_settings,
)
from relay.db import sa_executor, write_transaction
from relay.home import Home

RECEIVED_PREFIX = "agents:"


class GatewayAudit:
    """The audit of one gateway home, on its store's engine."""

    def __init__(self, home: Home, engine: Engine) -> None:
        self.home = home
        self.engine = engine

    def record(self, event_type: str, **fields: FieldValue) -> AuditRecord:
        """Append one record to the gateway's own chain, then catch the sinks up."""
        with write_transaction(self.engine) as conn:
            record = log.append(sa_executor(conn), event_type, fields)
        self.deliver()
        return record

    def own_records(self) -> list[AuditRecord]:
        with self.engine.connect() as conn:
            return log.records_after(sa_executor(conn), 0)

    def received(self, agent: str | None = None) -> list[tuple[str, AuditRecord]]:
        """Records received from agents, by agent then seq."""
        sql = "SELECT agent, record FROM agent_audit"
        params: tuple[Any, ...] = ()
        if agent is not None:
            sql += " WHERE agent = ?"
            params = (agent,)
        with self.engine.connect() as conn:
            rows = sa_executor(conn)(sql + " ORDER BY agent, seq", params)
        return [(str(a), record_from_json(r)) for a, r in rows]

    def deliver(self) -> list[Delivery]:
        """Send the sinks what they have not had: the gateway's records, then the agents'."""
        sinks = self._sinks()
        if not sinks:
            return []
        with write_transaction(self.engine) as conn:
            execute = sa_executor(conn)
            own = deliver_all(
                sinks,
                lambda name: log.sink_cursor(execute, name),
                log.local_source(execute, self.home.identity.name),
            )
            received = deliver_all(
                sinks,
                lambda name: log.sink_cursor(execute, RECEIVED_PREFIX + name),
                _received_source(execute),
            )
        report_failures(own + received)
        return own + received

    def _sinks(self) -> list[AuditSink]:
        config = self.home.config
        return sinks_from_settings(
            str(config.get("audit.jsonl")),
            str(config.get("audit.syslog")),
            str(config.get("audit.syslog_format")),
        )


def _received_source(execute: log.Execute) -> Any:
    def load_after(position: int, limit: int) -> Sequence[QueuedRecord]:
        rows = execute(
            "SELECT id, agent, record FROM agent_audit WHERE id > ? ORDER BY id LIMIT ?",
            (position, limit),
        )
        return [QueuedRecord(int(i), str(a), record_from_json(r)) for i, a, r in rows]

    return load_after
