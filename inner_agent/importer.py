"""Importing bundles into the agent: the agent's side of the one import loop.

Per file: the loop (:mod:`relay.intake`) fetches within the size cap (the transport refuses
non-regular files and oversized ones before reading); the pure pipeline
(:func:`relay.bundle.receive.receive_secrets`) judges it inside the store's write transaction,
which then applies it. Every outcome is reported and audited; a rejected file's bytes are copied
to the bounded quarantine, and the source is only modified by ``--delete-after-import`` (files
applied, duplicate or rolled back for this agent).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inner_agent.activation import activation_fields
from inner_agent.agent_keys import keys_for, own_keys, promote
from inner_agent.audit import AgentAudit
from inner_agent.store import AgentStore, ApplyResult, ReceivingStream
from relay import crashpoint, intake
from relay.audit import log
from relay.bundle.envelope import parse_head
from relay.bundle.limits import Limits
from relay.bundle.receive import judge_head, precheck_secrets, receive_secrets
from relay.bundle.verify import Trust
from relay.durations import parse_duration
from relay.errors import (
    DECRYPT_FAILED,
    DELTA_BASE_MISSING,
    DUPLICATE,
    EXPIRED,
    MALFORMED,
    NOT_REGULAR_FILE,
    ROLLBACK,
    TOO_LARGE,
    WRONG_RECIPIENT,
    BundleDuplicate,
    BundleRejected,
)
from relay.home import Home
from relay.identity import PublicIdentity
from relay.quarantine import Quarantine
from relay.transport import Pending, Source, TransportOptions
from relay.trust.clock import ClockAlarm, judge_time

if TYPE_CHECKING:
    pass

_log = logging.getLogger("relay.import")


@dataclass(frozen=True)
class Outcome:
    """What happened to one file."""

    name: str
    status: str  # applied | duplicate | skipped | rejected
    code: str | None = None
    message: str = ""
    seq: int | None = None
    result: ApplyResult | None = None
    quarantined: str | None = None
    bundle_id: str | None = None
    recorded: bool = False  # its audit record was written in the apply transaction

    def audit_fields(self) -> dict[str, str | int | None]:
        """What the audit record of this outcome says (never a value)."""
        fields: dict[str, str | int | None] = {"file": self.name}
        if self.code and self.status != "duplicate":
            fields["reason"] = self.code
        if self.seq is not None:
            fields["bundle_seq"] = self.seq
        if self.bundle_id is not None:
            fields["bundle_hash"] = self.bundle_id
        if self.result is not None:
            fields.update(written=self.result.written, removed=self.result.removed)
        return fields


class AgentImporter:
    """Imports bundles into one agent home (an :class:`relay.intake.Side`)."""

    def __init__(
        self,
        home: Home,
        store: AgentStore,
        clock: Callable[[], int],
        audit: AgentAudit | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.home = home
        self.store = store
        self.clock = clock
        self.audit = audit
        self._limits = limits or Limits.from_config(home.config)
        self.quarantine = Quarantine(home.quarantine_path, self._limits.quarantine_bytes)
        self.skew = parse_duration(str(home.config.get("agent.clock_skew")))
        self.ahead_limit = parse_duration(str(home.config.get("agent.clock_ahead_limit")))
        self._clock_alarm = ClockAlarm()

    def judged_time(self) -> int:
        """The time bundles are judged at: never before the persisted time floor. A clock behind
        the floor or far ahead of it is recorded in the audit (once per state change)."""
        floor = self.store.time_floor()
        judged = judge_time(int(self.clock()), floor, self.skew, self.ahead_limit)
        event = self._clock_alarm.event(judged)
        if event is not None and self.audit is not None:
            self.audit.record(event, **judged.fields())
        return judged.now

    @property
    def limits(self) -> Limits:
        return self._limits

    def import_location(
        self, location: str, options: TransportOptions | None = None
    ) -> list[Outcome]:
        """Import every bundle at ``location`` (a file, a folder or a transport URL)."""
        return intake.import_location(location, options, self)

    def _import_item(
        self, source: Source, item: Pending, options: TransportOptions | None
    ) -> Outcome:
        return intake.import_item(source, item, options, self)

    # -- the Side of the import loop -----------------------------------------------------------

    def judge_head(self, name: str, head: bytes) -> Outcome | None:
        verdict = judge_head(head, self._trust(), self.store.was_applied)
        if verdict is None:
            return None
        seq = verdict.head.header.seq
        if verdict.status == "elsewhere":
            mine = {k.identity.key_id for k in own_keys(self.home, self.store, self.clock())}
            if verdict.head.header.recipient_key in mine:
                return None  # for our next or previous key: judge it in full
            return Outcome(name, "skipped", WRONG_RECIPIENT, "addressed to another agent", seq)
        return self._recorded(
            Outcome(
                name, "duplicate", DUPLICATE, "already applied", seq, None, None, verdict.bundle_id
            )
        )

    def unread(self, name: str, status: str, code: str, message: str) -> Outcome:
        outcome = Outcome(name, status, code, message)
        return self._recorded(outcome) if status == "rejected" else outcome

    def removable(self, outcome: Outcome) -> bool:
        """Only what was judged for this agent: applied, duplicate or rollback."""
        return outcome.status in ("applied", "duplicate") or outcome.code == ROLLBACK

    # -- one file ------------------------------------------------------------------------------

    def import_bytes(self, name: str, data: bytes, listed: bool = False) -> Outcome:
        """Verify and apply one bundle's bytes, record the outcome in the audit log, and prune
        the audit records the gateway acknowledged. Never raises: anything unexpected is a
        ``malformed`` rejection of this file. ``listed``: found in a folder (a bundle for
        another agent is then a quiet skip, not an error)."""
        try:
            outcome = self._receive(name, data, listed)
        except Exception as exc:  # per-file isolation
            _log.warning("importing %s failed: %s", name, type(exc).__name__)
            outcome = self._rejected(
                name, data, BundleRejected(f"unreadable ({type(exc).__name__})", code=MALFORMED)
            )
        if outcome.status == "applied":
            self._after_apply()
        return self._recorded(outcome)

    def prejudge(self, name: str, data: bytes, listed: bool = False) -> Outcome | None:
        """What :meth:`import_bytes` would answer for a bundle it would not decrypt (a
        duplicate, a skip, a rejection: the same outcome, record and quarantined copy), or
        ``None`` when the bundle is to be decrypted and applied, or on any doubt. Nothing is
        written to the store (the agent service, ADR 0022)."""
        try:
            mine = keys_for(own_keys(self.home, self.store, self.clock()), _recipient_key(data))
            trust = self._trust(mine.identity)
            judged = self.judged_time()
            with self.store.raw() as conn:
                stream = ReceivingStream(conn, self.store.skew)
                precheck_secrets(data, trust, stream, judged, self._limits)
        except (BundleDuplicate, BundleRejected) as exc:
            return self._recorded(self._judged(name, data, listed, exc))
        except Exception:  # the import proper will judge it, and isolate what fails
            return None
        return None

    def _after_apply(self) -> None:
        """Rotation follow-ups of an applied bundle (answered requests, expiry-window
        requests: inner_agent/rotation.py). The bundle is committed: a failure here is logged."""
        from inner_agent.rotation import after_import

        try:
            after_import(self.home, self.clock())
        except Exception as exc:
            _log.warning("rotation follow-up failed: %s", type(exc).__name__)

    def _recorded(self, outcome: Outcome) -> Outcome:
        if self.audit is None or outcome.status == "skipped":
            return outcome
        if outcome.recorded:
            self.audit.deliver()  # the record was committed with the apply; the sinks catch up
        else:
            self.audit.record(f"bundle.{outcome.status}", **outcome.audit_fields())
        for fields in activation_fields(outcome.result):
            self.audit.record("secret.activated", **fields)
        if outcome.result is not None and outcome.result.audit_ack:
            self.audit.acknowledge(outcome.result.audit_ack)
        return outcome

    def _trust(self, me: PublicIdentity | None = None) -> Trust:
        root = self.store.root_state()  # a pinned gateway root (spec §15), or None
        senders = self.store.trusted_senders()
        return Trust(me or self.home.identity, senders, root, self.skew)

    def _receive(self, name: str, data: bytes, listed: bool) -> Outcome:
        mine = keys_for(own_keys(self.home, self.store, self.clock()), _recipient_key(data))
        trust = self._trust(mine.identity)
        judged = self.judged_time()
        now = self.clock()
        try:
            with self.store.receiving() as stream:
                received = receive_secrets(data, trust, mine.keys, stream, judged, self._limits)
                result = stream.apply(received, now)
                _audit_applied(stream.conn, name, received.bundle_id, result)
                crashpoint.reached("apply.written")
            crashpoint.reached("apply.committed")
        except (BundleDuplicate, BundleRejected) as exc:
            return self._judged(name, data, listed, exc)
        if mine.label == "next":  # the gateway seals to our new key: switch to it
            self._switch_keys(received.bundle.envelope.header.expires)
        return Outcome(
            name, "applied", None, "", result.seq, result, None, received.bundle_id, recorded=True
        )

    def _judged(
        self, name: str, data: bytes, listed: bool, exc: BundleDuplicate | BundleRejected
    ) -> Outcome:
        """The outcome of a bundle the pipeline refused or found applied before."""
        if isinstance(exc, BundleDuplicate):
            return Outcome(
                name, "duplicate", exc.code, exc.message, None, None, None, _bundle_id(data)
            )
        if listed and exc.code == WRONG_RECIPIENT:
            return Outcome(name, "skipped", WRONG_RECIPIENT, "addressed to another agent")
        return self._rejected(name, data, exc)

    def _switch_keys(self, keep_until: int) -> None:
        """Make the next key current. The bundle is applied whatever happens here: a switch
        that fails half-way is finished by the next bundle sealed to the new key."""
        try:
            promote(self.home, self.store, keep_until)
        except Exception as exc:
            _log.warning("switching to the new agent key failed: %s", type(exc).__name__)

    def _rejected(self, name: str, data: bytes, exc: BundleRejected) -> Outcome:
        kept = None
        if exc.code not in (TOO_LARGE, NOT_REGULAR_FILE):
            kept = str(self.quarantine.keep(name, data, exc.code))
        bundle_id = _bundle_id(data) if exc.code in AFTER_AUTHENTICATION else None
        return Outcome(
            name, "rejected", exc.code, exc.message, quarantined=kept, bundle_id=bundle_id
        )


def _audit_applied(conn: Any, name: str, bundle_id: str, result: ApplyResult) -> None:
    """Append ``bundle.applied`` inside the apply transaction, so a crash can never leave an
    applied bundle without its record, or a record without the bundle (spec §10.2)."""
    from inner_agent.rawdb import executor

    outcome = Outcome(name, "applied", None, "", result.seq, result, None, bundle_id)
    log.append(executor(conn), "bundle.applied", outcome.audit_fields())


# Codes only reached once the signature verified: the bundle id then names an authentic bundle.
AFTER_AUTHENTICATION = frozenset(
    {WRONG_RECIPIENT, EXPIRED, ROLLBACK, DELTA_BASE_MISSING, DECRYPT_FAILED}
)


def _bundle_id(data: bytes) -> str | None:
    """The id the head of an authenticated bundle names (for the audit record)."""
    try:
        return parse_head(data).bundle_id
    except Exception:  # only a label: never let it fail an import
        return None


def _recipient_key(data: bytes) -> str:
    """The recipient key id the (unverified) header names: it only picks which of our keys the
    pipeline verifies and opens the bundle with."""
    try:
        return parse_head(data).header.recipient_key
    except Exception:
        return ""
