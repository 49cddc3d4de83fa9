"""The agent's audit: every action becomes a chained record in the store, delivered to the
configured sinks by the process that wrote it, exported to the gateway in sealed audit bundles,
and pruned only once the gateway acknowledged it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inner_agent.audit_split import envelope_overhead, item_weights, split_records
from inner_agent.rawdb import executor, immediate, raw_connection
from relay import crashpoint
from relay.audit import log
from relay.audit.chain import AuditRecord
from relay.audit.record import FieldValue
from relay.audit.sinks import AuditSink, Delivery, deliver_all, report_failures, sinks_for
from relay.bundle.audit_payload import AuditPayload, payload_frame_size
from relay.bundle.seal import seal_bundle
from relay.codes import NOT_TRUSTED, TOO_LARGE
from relay.durations import parse_duration
from relay.errors import UsageError
from relay.home import Home
from relay.identity import PublicIdentity

ACKED_KEY = "audit_acked"
BUNDLE_SEQ_KEY = "audit_bundle_seq"


@dataclass(frozen=True)
class ExportedAudit:
    """An audit bundle ready to be written."""

    name: str
    data: bytes
    seq: int
    records: int
    first: int | None
    last: int | None


class AgentAudit:
    """The audit log of one agent home."""

    def __init__(self, home: Home) -> None:
        self.home = home

    def record(self, event_type: str, **fields: FieldValue) -> AuditRecord:
        """Append one record, then deliver what the sinks have not had yet."""
        with raw_connection(self.home) as conn:
            return self.record_on(conn, event_type, fields)

    def record_on(self, conn: Any, event_type: str, fields: dict[str, FieldValue]) -> AuditRecord:
        """:meth:`record` on a raw connection the caller already holds."""
        execute = executor(conn)
        with immediate(conn):
            record = log.append(execute, event_type, fields)
        self._deliver(execute)
        return record

    def deliver(self) -> list[Delivery]:
        """Catch the sinks up with the store (also done after every record)."""
        with raw_connection(self.home) as conn:
            return self._deliver(executor(conn))

    def _sinks(self) -> list[AuditSink]:
        return sinks_for(self.home.config)

    def _deliver(self, execute: Any) -> list[Delivery]:
        sinks = self._sinks()
        if not sinks:
            return []
        source = log.local_source(execute, self.home.identity.name)
        deliveries = deliver_all(sinks, lambda name: log.sink_cursor(execute, name), source)
        report_failures(deliveries)
        return deliveries

    def _prune(self, execute: Any) -> int:
        """Drop what the gateway acknowledged and every sink has had: nothing is lost."""
        mark = _meta_int(execute, ACKED_KEY)
        for sink in self._sinks():
            mark = min(mark, log.sink_cursor(execute, sink.name).load())
        return log.prune_through(execute, mark) if mark > 0 else 0

    def records(self) -> list[AuditRecord]:
        """Every record still held (unacknowledged ones, and the newest)."""
        with raw_connection(self.home) as conn:
            return log.records_after(executor(conn), 0)

    def acknowledged(self) -> int:
        with raw_connection(self.home) as conn:
            return _meta_int(executor(conn), ACKED_KEY)

    def unacked(self) -> int:
        """How many records the gateway has not acknowledged yet."""
        with raw_connection(self.home) as conn:
            execute = executor(conn)
            acked = _meta_int(execute, ACKED_KEY)
            return int(execute("SELECT count(*) FROM audit_log WHERE seq > ?", (acked,))[0][0])

    def acknowledge(self, mark: int) -> int:
        """The gateway holds every record up to ``mark``: prune them, but never beyond our head
        nor beyond what a sink still has to send. Returns how many were pruned."""
        with raw_connection(self.home) as conn:
            execute = executor(conn)
            with immediate(conn):
                current = log.head(execute)
                mark = min(mark, current[0] if current else 0)
                if mark > _meta_int(execute, ACKED_KEY):
                    _set_meta(execute, ACKED_KEY, mark)
                _prune_rotation_items(execute, _meta_int(execute, ACKED_KEY))
                return self._prune(execute)

    def export_bundles(self, gateway: PublicIdentity, now: int) -> list[ExportedAudit]:
        """Sealed audit bundles holding every unacknowledged record (at least once), split so
        each stays under ``limits.max_bundle_bytes`` and ``limits.max_entries``; consecutive
        ``seq``, the same head in each. At least one bundle, empty when nothing is pending.

        Each bundle's ``audit.exported`` record commits with its seq and seal, before the caller
        writes any file: a crash in between leaves a record and a spent seq for a file that never
        appeared (its records go again in the next export), never a written bundle without its
        record."""
        keys = self.home.secrets.keys
        me = self.home.identity
        config = self.home.config
        validity = parse_duration(str(config.get("audit.valid_for")))
        cap = int(config.get("limits.max_bundle_bytes")) - envelope_overhead(me, keys, gateway)
        with raw_connection(self.home) as conn:
            execute = executor(conn)
            with immediate(conn):  # seq, seal and audit.exported commit before any file exists
                acked = _meta_int(execute, ACKED_KEY)
                records = log.records_after(execute, acked)
                top = log.head(execute) or (0, "0" * 64)
                frame = payload_frame_size(me.name, top[0], top[1])
                items = _rotation_items(execute, acked)
                weights = item_weights(items, records)  # items ride with their records
                entries = int(config.get("limits.max_entries"))
                runs = split_records(records, frame, cap, entries, weights)
                plaintexts = [
                    _plaintext(me.name, top, run, items, i == len(runs) - 1, cap)
                    for i, run in enumerate(runs)
                ]
                first_seq = _meta_int(execute, BUNDLE_SEQ_KEY) + 1
                _set_meta(execute, BUNDLE_SEQ_KEY, first_seq + len(runs) - 1)
                exported = []
                for seq, (run, plaintext) in enumerate(
                    zip(runs, plaintexts, strict=True), first_seq
                ):
                    data = seal_bundle(
                        kind="audit",
                        sender=me,
                        keys=keys,
                        recipient=gateway,
                        seq=seq,
                        created=now,
                        expires=now + validity,
                        plaintext=plaintext,
                    )
                    name = f"{me.name}-to-{gateway.name}.audit.{seq:010d}.bundle"
                    first = run[0].seq if run else None
                    last = run[-1].seq if run else None
                    exported.append(ExportedAudit(name, data, seq, len(run), first, last))
                    log.append(
                        execute,
                        "audit.exported",
                        {
                            "file": name,
                            "bundle_seq": seq,
                            "records": len(run),
                            "first_seq": first,
                            "last_seq": last,
                        },
                    )
                crashpoint.reached("audit_export.sealed")
            crashpoint.reached("audit_export.committed")
            self._deliver(execute)
        return exported


def trusted_gateway(home: Home) -> PublicIdentity:
    """The gateway this agent trusts (``not_trusted`` before ``relay agent trust``)."""
    with raw_connection(home) as conn:
        row = conn.execute(
            "SELECT role, name, sign_public, box_public FROM trusted LIMIT 1"
        ).fetchone()
    if row is None:
        raise UsageError("this agent trusts no gateway yet (relay agent trust)", code=NOT_TRUSTED)
    return PublicIdentity(row[0], row[1], bytes(row[2]), bytes(row[3]))


def _rotation_items(execute: Any, acked: int) -> Any:
    """Rotation items riding with unacknowledged records (inner_agent/rotation_outbox.py)."""
    from inner_agent.rotation_outbox import unacked_items

    try:
        return unacked_items(execute, acked)
    except Exception as exc:  # a store written before the outbox existed holds none
        if "rotation_outbox" not in str(exc):
            raise
        return ()


def _plaintext(
    agent: str, top: tuple[int, str], run: Any, items: Any, last_run: bool, cap: int
) -> bytes:
    """One part's payload; never over ``cap`` (the split accounts for every byte, this is the
    last guard, before any bundle seq is spent)."""
    riding = _riding_with(items, run, last_run)
    plaintext = AuditPayload(agent, top[0], top[1], run, riding).encode()
    if len(plaintext) > cap:
        raise UsageError(
            "an audit part with its rotation items is over limits.max_bundle_bytes",
            code=TOO_LARGE,
        )
    return plaintext


def _riding_with(items: Any, run: Any, last_run: bool) -> Any:
    """The items whose record is in ``run`` (those of no run, the last bundle carries)."""
    if not run:
        return tuple(items) if last_run else ()
    first, last = run[0].seq, run[-1].seq
    return tuple(i for i in items if first <= i.seq <= last or (last_run and i.seq > last))


def _prune_rotation_items(execute: Any, acked: int) -> None:
    from inner_agent.rotation_outbox import prune_acked

    try:
        prune_acked(execute, acked)
    except Exception as exc:
        if "rotation_outbox" not in str(exc):
            raise


def _meta_int(execute: Any, key: str) -> int:
    rows = execute("SELECT value FROM meta WHERE key = ?", (key,))
    return int(rows[0][0]) if rows else 0


def _set_meta(execute: Any, key: str, value: int) -> None:
    execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, str(value)),
    )
