"""Importing the return stream: agents' audit bundles, verified, merged by (agent, seq).

Trust rules are the agent's (size, parse, sender = an enrolled agent, signature, recipient =
this gateway, expiry, decrypt) except the sequence: audit records are facts, so bundles that arrive
out of order are merged, not refused as ``rollback``; a bundle imported twice is a ``duplicate``.
Before anything is stored the incoming records are checked against each other and against what
is held: a record whose hash does not recompute, a link that does not hold, a seq already held
with another hash, or a head below one already seen is ``chain_broken``, and nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from outer_gateway.audit import GatewayAudit
from outer_gateway.rotation_inbox import process_inbox, take_items
from outer_gateway.store import GatewayStore
from relay import quarantine
from relay.audit.chain import AuditRecord, ChainReport, verify_chain
from relay.audit.record import compute_hash, record_to_json
from relay.bundle.audit_payload import AuditPayload, decode_audit_payload
from relay.bundle.verify import Trust, VerifiedBundle, open_payload, verify_bundle
from relay.db import sa_executor, write_transaction
from relay.errors import (
    MALFORMED,
    NOT_REGULAR_FILE,
    TOO_LARGE,
    BundleDuplicate,
    BundleRejected,
    TransportError,
)
from relay.home import Home
from relay.transport import Pending, Source, TransportOptions, each_pending
from relay.transport.base import VANISHED_CODES

CHAIN_BROKEN = "chain_broken"


@dataclass(frozen=True)
class AuditOutcome:
    """What happened to one audit bundle."""

    name: str
    status: str  # imported | duplicate | skipped | rejected
    code: str | None = None
    message: str = ""
    agent: str | None = None
    seq: int | None = None
    new: int = 0
    duplicates: int = 0


class AuditImporter:
    """Imports agents' audit bundles into one gateway."""

    def __init__(
        self, home: Home, store: GatewayStore, audit: GatewayAudit, clock: Callable[[], int]
    ) -> None:
        self.home = home
        self.store = store
        self.audit = audit
        self.clock = clock
        self.max_bytes = int(home.config.get("limits.max_bundle_bytes"))
        self.max_entries = int(home.config.get("limits.max_entries"))

    def import_location(
        self, location: str, options: TransportOptions | None = None
    ) -> list[AuditOutcome]:
        return each_pending(
            location, options, lambda source, item: self._import_item(source, item, options)
        )

    def _import_item(
        self, source: Source, item: Pending, options: TransportOptions | None
    ) -> AuditOutcome:
        try:
            data = source.fetch(item, self.max_bytes)
        except TransportError as exc:
            if exc.code not in VANISHED_CODES:
                raise
            return AuditOutcome(item.name, "skipped", exc.code, "gone before it could be read")
        except BundleRejected as exc:
            return self._recorded(AuditOutcome(item.name, "rejected", exc.code, exc.message))
        outcome = self.import_bytes(item.name, data)
        if options is not None and options.delete_after_import and outcome.status != "rejected":
            source.remove(item)
        return outcome

    def import_bytes(self, name: str, data: bytes) -> AuditOutcome:
        """Verify one audit bundle and merge its records; the outcome is audited. Rotation items
        it carried are then acted on (outer_gateway/rotation_inbox.py)."""
        try:
            outcome = self._import(name, data)
            process_inbox(self.home, self.store, self.clock())
        except BundleDuplicate as exc:
            outcome = AuditOutcome(name, "duplicate", exc.code, exc.message)
        except BundleRejected as exc:
            if exc.code not in (TOO_LARGE, NOT_REGULAR_FILE):
                quarantine.keep(self.home.quarantine_path, name, data, exc.code)
            outcome = AuditOutcome(name, "rejected", exc.code, exc.message)
        return self._recorded(outcome)

    def _recorded(self, outcome: AuditOutcome) -> AuditOutcome:
        fields: dict[str, str | int | None] = {"file": outcome.name}
        if outcome.agent:
            fields["agent_name"] = outcome.agent
        if outcome.seq is not None:
            fields["bundle_seq"] = outcome.seq
        if outcome.status == "rejected":
            self.audit.record("bundle.rejected", reason=outcome.code, **fields)
        elif outcome.status == "duplicate":
            self.audit.record("bundle.duplicate", **fields)
        elif outcome.status == "skipped":
            pass  # gone before it was read: nothing happened
        else:
            self.audit.record(
                "audit.imported", records=outcome.new, duplicates=outcome.duplicates, **fields
            )
        return outcome

    def _import(self, name: str, data: bytes) -> AuditOutcome:
        senders = {a.identity.key_id: a.identity for a in self.store.agents()}
        bundle = verify_bundle(
            data, Trust(self.home.identity, senders), self.clock(), self.max_bytes, ("audit",)
        )
        header = bundle.envelope.header
        with write_transaction(self.store.engine) as conn:
            execute = sa_executor(conn)
            if execute("SELECT 1 FROM audit_bundles WHERE bundle_id = ?", (bundle.bundle_id,)):
                raise BundleDuplicate(f"audit bundle seq {header.seq} was already imported")
            payload = self._payload(bundle)
            held = {
                int(seq): (str(h), str(p))
                for seq, h, p in execute(
                    "SELECT seq, hash, prev_hash FROM agent_audit WHERE agent = ?", (header.sender,)
                )
            }
            new, duplicates = check_incoming(payload, held)
            for record in new:
                execute(
                    "INSERT INTO agent_audit (agent, seq, hash, prev_hash, type, time, record) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        header.sender,
                        record.seq,
                        record.hash,
                        record.prev_hash,
                        record.type,
                        record.time,
                        record_to_json(record),
                    ),
                )
            take_items(execute, self.store, header.sender, payload.rotation, self.clock())
            execute(
                "INSERT INTO audit_bundles (bundle_id, agent, seq, records, head_seq, imported_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    bundle.bundle_id,
                    header.sender,
                    header.seq,
                    len(payload.records),
                    payload.head_seq,
                    self.clock(),
                ),
            )
        return AuditOutcome(
            name, "imported", None, "", header.sender, header.seq, len(new), duplicates
        )

    def _payload(self, bundle: VerifiedBundle) -> AuditPayload:
        payload = decode_audit_payload(
            open_payload(bundle, self.home.secrets.keys), self.max_entries
        )
        if payload.agent != bundle.sender.name:
            raise BundleRejected("audit payload names another agent", code=MALFORMED)
        return payload


def check_incoming(
    payload: AuditPayload, held: dict[int, tuple[str, str]]
) -> tuple[list[AuditRecord], int]:
    """The records to store and how many were already held; ``chain_broken`` if they cannot all
    be true together with what is held (pure: hashes in, verdict out)."""
    if payload.records and (payload.records[-1].seq, payload.records[-1].hash) != (
        payload.head_seq,
        payload.head_hash,
    ):
        raise _broken("the last record is not the declared head")
    hashes = {seq: h for seq, (h, _) in held.items()}
    prevs = {seq: p for seq, (_, p) in held.items()}
    new: list[AuditRecord] = []
    incoming: set[int] = set()
    duplicates = 0
    for record in payload.records:
        if compute_hash(record) != record.hash:
            raise _broken(f"record {record.seq} does not hash to its hash")
        known = hashes.get(record.seq)
        if known is not None:
            if known != record.hash:
                raise _broken(f"record {record.seq} differs from the one already held")
            duplicates += 1
            continue
        if record.seq in incoming:
            raise _broken(f"record {record.seq} appears twice")
        incoming.add(record.seq)
        new.append(record)
        hashes[record.seq] = record.hash
        prevs[record.seq] = record.prev_hash
    for seq in incoming | {seq + 1 for seq in incoming}:
        if seq in prevs and seq - 1 in hashes and prevs[seq] != hashes[seq - 1]:
            raise _broken(f"record {seq} does not link to record {seq - 1}")
        if seq == 1 and seq in prevs and prevs[seq] != "0" * 64:
            raise _broken("record 1 does not start the chain")
    return sorted(new, key=lambda r: r.seq), duplicates


def _broken(message: str) -> BundleRejected:
    return BundleRejected(message, code=CHAIN_BROKEN)


@dataclass(frozen=True)
class AgentChain:
    """The verdict on one agent's chain as held by the gateway."""

    agent: str
    report: ChainReport
    expected_high: int

    @property
    def missing(self) -> list[tuple[int, int]]:
        """Missing seq ranges, including a tail the agent announced but never delivered."""
        gaps = list(self.report.gaps)
        if self.expected_high > self.report.high:
            gaps.append((self.report.high + 1, self.expected_high))
        return gaps

    @property
    def ok(self) -> bool:
        return not self.missing and not self.report.breaks


def verify_agents(audit: GatewayAudit, agents: list[str]) -> list[AgentChain]:
    """Verify each agent's received chain: intact, no gap, up to the newest announced head."""
    chains = []
    for agent in agents:
        records = [r for _, r in audit.received(agent)]
        with audit.engine.connect() as conn:
            top = sa_executor(conn)(
                "SELECT max(head_seq) FROM audit_bundles WHERE agent = ?", (agent,)
            )[0][0]
        chains.append(AgentChain(agent, verify_chain(records), int(top or 0)))
    return chains


def contiguous_high(store: GatewayStore, agent: str) -> int:
    """The highest seq such that every record from 1 to it is held: the acknowledgement mark."""
    with store.engine.connect() as conn:
        seqs = [
            int(r[0])
            for r in sa_executor(conn)(
                "SELECT seq FROM agent_audit WHERE agent = ? ORDER BY seq", (agent,)
            )
        ]
    mark = 0
    for seq in seqs:
        if seq != mark + 1:
            break
        mark = seq
    return mark
