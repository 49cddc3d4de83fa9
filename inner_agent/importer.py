"""Importing bundles into the agent: from files, folders or any transport source.

Per file: fetch within the size cap (the transport refuses non-regular files and oversized ones
before reading), verify (pure), then apply in one transaction. Every outcome is reported; a
rejected file's bytes are copied to quarantine and the source is never modified.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from inner_agent.activation import activation_fields
from inner_agent.audit import AgentAudit
from inner_agent.store import AgentStore, ApplyResult
from relay import quarantine
from relay.bundle.envelope import parse_envelope
from relay.bundle.verify import Trust, verify_bundle
from relay.errors import (
    NOT_REGULAR_FILE,
    TOO_LARGE,
    WRONG_RECIPIENT,
    BundleDuplicate,
    BundleRejected,
    TransportError,
)
from relay.home import Home
from relay.transport import Pending, Source, TransportOptions, each_pending
from relay.transport.base import VANISHED_CODES


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
    """Imports bundles into one agent home."""

    def __init__(
        self,
        home: Home,
        store: AgentStore,
        clock: Callable[[], int],
        audit: AgentAudit | None = None,
    ) -> None:
        self.home = home
        self.store = store
        self.clock = clock
        self.audit = audit
        self.limits = {
            "max_bundle_bytes": int(home.config.get("limits.max_bundle_bytes")),
            "max_secret_bytes": int(home.config.get("limits.max_secret_bytes")),
            "max_entries": int(home.config.get("limits.max_entries")),
        }

    def import_location(
        self, location: str, options: TransportOptions | None = None
    ) -> list[Outcome]:
        """Import every bundle at ``location`` (a file, a folder or a transport URL)."""
        return each_pending(
            location, options, lambda source, item: self._import_item(source, item, options)
        )

    def _import_item(
        self, source: Source, item: Pending, options: TransportOptions | None
    ) -> Outcome:
        if not item.explicit and self._applied_by_name(item.name):
            # The conventional name says which seq this is, and it was applied: no download.
            return Outcome(item.name, "duplicate", "duplicate", "already applied (by its name)")
        try:
            data = source.fetch(item, self.limits["max_bundle_bytes"])
        except TransportError as exc:
            if exc.code not in VANISHED_CODES:
                raise
            return Outcome(item.name, "skipped", exc.code, "gone before it could be read")
        except BundleRejected as exc:
            return self.record_fetch_failure(Outcome(item.name, "rejected", exc.code, exc.message))
        outcome = self.import_bytes(item.name, data, explicit=item.explicit)
        if options is not None and options.delete_after_import and outcome.status != "rejected":
            source.remove(item)
        return outcome

    def import_bytes(self, name: str, data: bytes, explicit: bool = True) -> Outcome:
        """Verify and apply one bundle's bytes, record the outcome in the audit log, and prune
        the audit records the gateway acknowledged."""
        outcome = self._verify_and_apply(name, data, explicit)
        if outcome.status == "applied":
            from inner_agent.rotation import after_import

            after_import(self.home, self.clock())
        if self.audit is not None and outcome.status != "skipped":
            self.audit.record(f"bundle.{outcome.status}", **outcome.audit_fields())
            for fields in activation_fields(outcome.result):
                self.audit.record("secret.activated", **fields)
            if outcome.result is not None and outcome.result.audit_ack:
                self.audit.acknowledge(outcome.result.audit_ack)
        return outcome

    def _applied_by_name(self, name: str) -> bool:
        parsed = _parse_bundle_name(name, self.home.identity.name)
        if parsed is None:
            return False
        sender, seq = parsed
        keys = [k for k, ident in self.store.trusted_senders().items() if ident.name == sender]
        return any(self.store.was_applied(key, "secrets", seq) for key in keys)

    def record_fetch_failure(self, outcome: Outcome) -> Outcome:
        """Audit a file refused before it was read (too large, not a regular file)."""
        if self.audit is not None:
            self.audit.record("bundle.rejected", **outcome.audit_fields())
        return outcome

    def _verify_and_apply(self, name: str, data: bytes, explicit: bool) -> Outcome:
        if not explicit and _addressed_elsewhere(data, self.home.identity.key_id):
            return Outcome(name, "skipped", WRONG_RECIPIENT, "addressed to another agent")
        trust = Trust(self.home.identity, self.store.trusted_senders())
        bundle_id = None
        try:
            bundle = verify_bundle(
                data, trust, self.clock(), self.limits["max_bundle_bytes"], ("secrets",)
            )
            bundle_id = bundle.bundle_id
            result = self.store.apply_secrets(
                bundle, self.home.secrets.keys, self.limits, self.clock()
            )
        except BundleDuplicate as exc:
            return Outcome(name, "duplicate", exc.code, exc.message, bundle_id=bundle_id)
        except BundleRejected as exc:
            kept = None
            if exc.code not in (TOO_LARGE, NOT_REGULAR_FILE):
                kept = str(quarantine.keep(self.home.quarantine_path, name, data, exc.code))
            return Outcome(
                name, "rejected", exc.code, exc.message, quarantined=kept, bundle_id=bundle_id
            )
        return Outcome(name, "applied", None, "", result.seq, result, bundle_id=bundle_id)


_NAME = re.compile(
    r"(?P<sender>[a-z0-9][a-z0-9._-]{0,62})-to-(?P<rest>.+)\.secrets\.(?P<seq>\d{10})\.bundle"
)


def _parse_bundle_name(name: str, me: str) -> tuple[str, int] | None:
    """(sender, seq) from ``SENDER-to-ME.secrets.SEQ.bundle``, if ``name`` has that form."""
    match = _NAME.fullmatch(name)
    if match is None or match.group("rest") != me:
        return None
    return match.group("sender"), int(match.group("seq"))


def _addressed_elsewhere(data: bytes, my_key_id: str) -> bool:
    """Whether a parsable header names another recipient (a shared medium: skip quietly)."""
    try:
        header = parse_envelope(data).header
    except BundleRejected:
        return False
    return header.recipient_key != my_key_id
