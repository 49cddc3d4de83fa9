"""Importing the return stream: agents' audit bundles, verified, merged by (agent, seq).

Trust rules are the agent's (size, parse, sender = an enrolled agent, signature, recipient =
this gateway, expiry, decrypt) except the sequence: audit records are facts, so bundles that arrive
out of order are merged, not refused as ``rollback``; a bundle imported twice is a ``duplicate``.
Before anything is stored the incoming records are merged with what is held by the one merge
function, :func:`outer_gateway.audit_merge.merge_incoming`: what cannot be true together with the
held records is ``chain_broken``, and nothing changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from outer_gateway.agent_keys import apply_rotation_requests, revoked_cutoff
from outer_gateway.audit import GatewayAudit
from outer_gateway.audit_merge import merge_incoming
from outer_gateway.delta import note_agent_records
from outer_gateway.keyring import load as load_keyring
from outer_gateway.online_key import online_identity, online_keys
from outer_gateway.retired_keys import is_open, open_key
from outer_gateway.rotation_inbox import process_inbox, take_items
from outer_gateway.store import GatewayStore
from relay import intake
from relay.audit.record import record_to_json
from relay.bundle.envelope import parse_head
from relay.bundle.limits import Limits
from relay.bundle.receive import judge_head, receive_audit
from relay.bundle.verify import HighWater, Trust
from relay.db import sa_executor, write_transaction
from relay.errors import (
    AGENT_REVOKED,
    DUPLICATE,
    MALFORMED,
    NOT_REGULAR_FILE,
    TOO_LARGE,
    WRONG_RECIPIENT,
    BundleDuplicate,
    BundleRejected,
)
from relay.home import Home
from relay.identity import PublicIdentity
from relay.quarantine import Quarantine
from relay.transport import TransportOptions

_log = logging.getLogger("relay.import")


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
    sealed_to_retired: str | None = None  # the retired key id it was opened with, if any


class AuditImporter:
    """Imports agents' audit bundles into one gateway (an :class:`relay.intake.Side`)."""

    def __init__(
        self,
        home: Home,
        store: GatewayStore,
        audit: GatewayAudit,
        clock: Callable[[], int],
        limits: Limits | None = None,
    ) -> None:
        self.home = home
        self.store = store
        self.audit = audit
        self.clock = clock
        self._limits = limits or Limits.from_config(home.config)
        self.quarantine = Quarantine(home.quarantine_path, self._limits.quarantine_bytes)

    @property
    def limits(self) -> Limits:
        return self._limits

    def import_location(
        self, location: str, options: TransportOptions | None = None
    ) -> list[AuditOutcome]:
        return intake.import_location(location, options, self)

    # -- the Side of the import loop -----------------------------------------------------------

    def judge_head(self, name: str, head: bytes) -> AuditOutcome | None:
        verdict = judge_head(head, self._trust(), self._was_imported)
        if verdict is None:
            return None
        header = verdict.head.header
        if verdict.status == "elsewhere":
            if is_open(self.home, load_keyring(self.home), header.recipient_key, self.clock()):
                return None  # sealed to a retired key still opened: judge it in full
            return AuditOutcome(name, "skipped", WRONG_RECIPIENT, "addressed to another gateway")
        return self._recorded(
            AuditOutcome(
                name, "duplicate", DUPLICATE, "already imported", header.sender, header.seq
            )
        )

    def unread(self, name: str, status: str, code: str, message: str) -> AuditOutcome:
        return self._recorded(AuditOutcome(name, status, code, message))

    def removable(self, outcome: AuditOutcome) -> bool:
        """Only what was judged for this gateway: imported or duplicate."""
        return outcome.status in ("imported", "duplicate")

    # -- one file ------------------------------------------------------------------------------

    def import_bytes(self, name: str, data: bytes, listed: bool = False) -> AuditOutcome:
        """Verify one audit bundle and merge its records; the outcome is audited. Never
        raises: anything unexpected is a ``malformed`` rejection of this file. Rotation items it
        carried are then acted on (outer_gateway/rotation_inbox.py)."""
        try:
            outcome = self._import(name, data)
        except BundleDuplicate as exc:
            outcome = AuditOutcome(name, "duplicate", exc.code, exc.message)
        except BundleRejected as exc:
            outcome = self._rejected(name, data, exc, listed)
        except Exception as exc:  # per-file isolation
            unexpected = BundleRejected(f"unreadable ({type(exc).__name__})", code=MALFORMED)
            outcome = self._rejected(name, data, unexpected, listed)
        recorded = self._recorded(outcome)
        if outcome.status == "imported":
            self._act_on_rotation_items()
        return recorded

    def _act_on_rotation_items(self) -> None:
        """The bundle is committed; its rotation items are held. Acting on them can fail (a
        database error): it is logged and retried after the next import."""
        try:
            process_inbox(self.home, self.store, self.clock())
        except Exception as exc:
            _log.warning("acting on rotation items failed: %s", type(exc).__name__)

    def _rejected(self, name: str, data: bytes, exc: BundleRejected, listed: bool) -> AuditOutcome:
        if listed and exc.code == WRONG_RECIPIENT:
            return AuditOutcome(name, "skipped", exc.code, "addressed to another gateway")
        if exc.code not in (TOO_LARGE, NOT_REGULAR_FILE):
            self.quarantine.keep(name, data, exc.code)
        return AuditOutcome(name, "rejected", exc.code, exc.message)

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
            pass  # gone before it was read, or another gateway's: nothing happened here
        else:
            if outcome.sealed_to_retired is not None:
                fields["retired_key_id"] = outcome.sealed_to_retired
            self.audit.record(
                "audit.imported", records=outcome.new, duplicates=outcome.duplicates, **fields
            )
        return outcome

    def _trust(self, me: PublicIdentity | None = None) -> Trust:
        senders = {a.identity.key_id: a.identity for a in self.store.agents()}
        return Trust(me or online_identity(self.home), senders)

    def _was_imported(self, bundle_id: str) -> bool:
        with self.store.engine.connect() as conn:
            return _AuditStreams(sa_executor(conn)).was_applied(bundle_id)

    def _import(self, name: str, data: bytes) -> AuditOutcome:
        me = online_identity(self.home)
        recipient = _recipient_key(data)
        trust, retired = self._trust(me), None
        if recipient == me.key_id:
            _, keys = online_keys(self.home)  # identity.key's, or a PKCS#11 token's
        else:
            keys = self.home.secrets.keys  # fails as wrong_recipient unless a retired key opens
            old = open_key(self.home, load_keyring(self.home), recipient, self.clock())
            if old is not None:  # the pipeline still judges everything, against that key
                trust, keys, retired = self._trust(old.identity), old.keys, recipient
        with write_transaction(self.store.engine) as conn:
            execute = sa_executor(conn)
            received = receive_audit(
                data, trust, keys, _AuditStreams(execute), self.clock(), self._limits
            )
            header = received.bundle.envelope.header
            cutoff = revoked_cutoff(conn, header.sender)
            if cutoff is not None and header.created > cutoff:
                raise BundleRejected(f"agent {header.sender} is revoked", code=AGENT_REVOKED)
            payload = received.payload
            held = {
                int(seq): (str(h), str(p))
                for seq, h, p in execute(
                    "SELECT seq, hash, prev_hash FROM agent_audit WHERE agent = ?", (header.sender,)
                )
            }
            merged = merge_incoming(payload, held)
            for record in merged.new:
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
            new_seqs = frozenset(record.seq for record in merged.new)
            note_agent_records(conn, header.sender, merged.new)  # delta bases (spec §8.3)
            take_items(execute, self.store, header.sender, payload.rotation, self.clock(), new_seqs)
            execute(
                "INSERT INTO audit_bundles (bundle_id, agent, seq, records, head_seq, imported_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    received.bundle_id,
                    header.sender,
                    header.seq,
                    len(payload.records),
                    payload.head_seq,
                    self.clock(),
                ),
            )
            rotations = apply_rotation_requests(conn, received.bundle.sender, merged.new)
        for rotation in rotations:
            event, fields = rotation.audit()
            self.audit.record(event, **fields)
        return AuditOutcome(
            name,
            "imported",
            None,
            "",
            header.sender,
            header.seq,
            len(merged.new),
            merged.duplicates,
            retired,
        )


def _recipient_key(data: bytes) -> str:
    """The recipient key id the (unverified) header names: it only picks which of our keys the
    pipeline verifies and opens the bundle with (as the agent's importer does)."""
    try:
        return parse_head(data).header.recipient_key
    except Exception:
        return ""


class _AuditStreams:
    """The return stream's state for the pipeline: which bundles were imported (no rollback)."""

    def __init__(self, execute: Callable[[str, tuple[object, ...]], list[Any]]) -> None:
        self.execute = execute

    def high_water(self, sender_key: str, kind: str) -> HighWater | None:
        return None

    def was_applied(self, bundle_id: str) -> bool:
        query = "SELECT 1 FROM audit_bundles WHERE bundle_id = ?"
        return bool(self.execute(query, (bundle_id,)))


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
