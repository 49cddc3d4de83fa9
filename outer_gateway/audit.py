"""The gateway's audit: its own chained log, the records received from agents, and delivery of
both to the SIEM sinks (agent records tagged with the agent's name)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
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
    sinks_for,
)
from relay.db import sa_executor, write_transaction
from relay.home import Home

RECEIVED_PREFIX = "agents:"
_log = logging.getLogger("relay.audit")


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
        return sinks_for(self.home.config)


def _received_source(execute: log.Execute) -> Any:
    def load_after(position: int, limit: int) -> Sequence[QueuedRecord]:
        rows = execute(
            "SELECT id, agent, record FROM agent_audit WHERE id > ? ORDER BY id LIMIT ?",
            (position, limit),
        )
        return [QueuedRecord(int(i), str(a), record_from_json(r)) for i, a, r in rows]

    return load_after


def record_refusal(home_path: Path, command: str, code: str) -> None:
    """``operator.refused`` in the gateway home at ``home_path``: ``command`` (``gateway key
    revoke``) and the reason ``code``, never the values given. Best effort: a home that cannot be
    opened (the refusal may be exactly that) is not audited, and nothing here masks the refusal."""
    from outer_gateway.store import GatewayStore

    try:
        home = Home.open(home_path, "gateway")
        store = GatewayStore.open(home)
    except Exception:  # not a gateway home, locked, too new…: the refusal itself is reported
        return
    try:
        GatewayAudit(home, store.engine).record("operator.refused", command=command, reason=code)
    except Exception as exc:  # the operator still sees the refusal; the log says why not audited
        _log.warning("auditing a refusal failed: %s", type(exc).__name__)
    finally:
        store.close()
