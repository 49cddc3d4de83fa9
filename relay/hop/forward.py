"""Forwarding: list the source, verify each bundle's sender and signature, put it to the
destination, remember it. Rejected files stay where they are, with their reason printed and
audited. The hop holds no recipient key: it cannot decrypt, and does not try."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from relay.audit import log
from relay.audit.record import FieldValue
from relay.bundle.limits import Limits
from relay.bundle.receive import judge_head, receive_sealed
from relay.bundle.seal import bundle_file_name
from relay.bundle.verify import Trust
from relay.codes import NOT_TRUSTED
from relay.db import sa_executor, write_transaction
from relay.durations import parse_duration
from relay.errors import MALFORMED, BundleRejected, TransportError, UsageError
from relay.home import Home
from relay.hop.store import HopStore
from relay.hop.trust_store import certified_senders, root_states
from relay.intake import fetch_head
from relay.transport import (
    Destination,
    Pending,
    Source,
    TransportOptions,
    open_destination,
    open_source,
)
from relay.transport.base import VANISHED_CODES
from relay.trust.clock import ClockAlarm, judge_time


@dataclass(frozen=True)
class HopOutcome:
    """What happened to one file at the source."""

    name: str
    status: str  # forwarded | skipped | rejected
    code: str | None = None
    message: str = ""
    destination: str | None = None


class Hop:
    """Moves verified bundles from one location to another."""

    def __init__(self, home: Home, store: HopStore, clock: Callable[[], int]) -> None:
        self.home = home
        self.store = store
        self.clock = clock
        self.limits = Limits.from_config(home.config)
        self.skew = parse_duration(str(home.config.get("hop.clock_skew")))
        self.ahead_limit = parse_duration(str(home.config.get("hop.clock_ahead_limit")))
        self._clock_alarm = ClockAlarm()

    def run_once(
        self,
        source_location: str,
        destination_location: str,
        options: TransportOptions,
        delete_after: bool = False,
    ) -> list[HopOutcome]:
        """One pass over the source."""
        if not self.store.senders() and not root_states(self.store.engine):
            raise UsageError(
                "this hop trusts no sender yet: pass --trust IDENTITY_FILE", code=NOT_TRUSTED
            )
        source = open_source(source_location, options)
        destination = open_destination(destination_location, options)
        try:
            return [
                self._one(source, destination, item, delete_after) for item in source.list_pending()
            ]
        finally:
            source.close()
            destination.close()

    def _one(
        self,
        source: Source,
        destination: Destination,
        item: Pending,
        delete_after: bool,
    ) -> HopOutcome:
        try:
            # Read per file: a bundle forwarded before may have taught a root or a revocation.
            trust, head_trust = self._trust()
            # Skip only after authenticating: a verified head naming a forwarded bundle.
            head = fetch_head(source, item)
            if judge_head(head, head_trust, self.store.was_forwarded) is not None:
                return HopOutcome(item.name, "skipped", message="already forwarded")
            data = source.fetch(item, self.limits.max_bundle_bytes)
            now = self.judged_time()
            bundle = receive_sealed(data, trust, now, self.limits, ("secrets", "audit"))
        except TransportError as exc:
            if exc.code not in VANISHED_CODES:
                raise
            return HopOutcome(item.name, "skipped", exc.code, "gone before it could be read")
        except BundleRejected as exc:
            self.record("bundle.rejected", file=item.name, reason=exc.code)
            return HopOutcome(item.name, "rejected", exc.code, exc.message)
        except Exception as exc:  # one odd file must not stop the others
            self.record("bundle.rejected", file=item.name, reason=MALFORMED)
            return HopOutcome(
                item.name, "rejected", MALFORMED, f"unreadable ({type(exc).__name__})"
            )
        header = bundle.envelope.header
        if self.store.was_forwarded(bundle.bundle_id):
            return HopOutcome(item.name, "skipped", message="already forwarded")
        where = destination.put(bundle_file_name(header), data)
        self.store.mark(
            bundle.bundle_id,
            item.name,
            len(data),
            header.kind,
            header.sender,
            header.seq,
            self.clock(),
            bundle.chain,
            created=header.created,
        )
        self.record(
            "bundle.forwarded",
            file=item.name,
            kind=header.kind,
            sender=header.sender,
            recipient=header.recipient,
            bundle_seq=header.seq,
            bundle_hash=bundle.bundle_id,
        )
        if delete_after:
            source.remove(item)
        return HopOutcome(item.name, "forwarded", destination=where)

    def judged_time(self) -> int:
        """The time bundles are judged at: never before the persisted time floor (the newest
        signed ``created`` time forwarded), as the agent does. A clock behind the floor or far
        ahead of it is recorded in the hop's audit, once per change of state."""
        judged = judge_time(int(self.clock()), self.store.time_floor(), self.skew, self.ahead_limit)
        event = self._clock_alarm.event(judged)
        if event is not None:
            self.record(event, **judged.fields())
        return judged.now

    def _trust(self) -> tuple[Trust, Trust]:
        """What the full pipeline judges against (gateways with a root by their chain, others
        by their pinned key), and what a head may be skipped on (pinned keys and the newest
        certified key of each rooted gateway)."""
        engine = self.store.engine
        senders = self.store.senders()
        roots = root_states(engine)
        plain = {k: s for k, s in senders.items() if s.name not in roots or s.role != "gateway"}
        heads = {**plain, **certified_senders(engine)}
        return Trust(None, plain, None, self.skew, roots), Trust(None, heads, None, self.skew)

    def record(self, event_type: str, **fields: FieldValue) -> None:
        """Append to the hop's own audit chain."""
        with write_transaction(self.store.engine) as conn:
            log.append(sa_executor(conn), event_type, fields)
