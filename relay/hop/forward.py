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
from relay.errors import MALFORMED, BundleRejected, TransportError, UsageError
from relay.home import Home
from relay.hop.store import HopStore
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

    def run_once(
        self,
        source_location: str,
        destination_location: str,
        options: TransportOptions,
        delete_after: bool = False,
    ) -> list[HopOutcome]:
        """One pass over the source."""
        senders = self.store.senders()
        if not senders:
            raise UsageError(
                "this hop trusts no sender yet: pass --trust IDENTITY_FILE", code=NOT_TRUSTED
            )
        source = open_source(source_location, options)
        destination = open_destination(destination_location, options)
        try:
            return [
                self._one(source, destination, item, Trust(None, senders), delete_after)
                for item in source.list_pending()
            ]
        finally:
            source.close()
            destination.close()

    def _one(
        self,
        source: Source,
        destination: Destination,
        item: Pending,
        trust: Trust,
        delete_after: bool,
    ) -> HopOutcome:
        try:
            # Skip only after authenticating: a verified head naming a forwarded bundle.
            if judge_head(fetch_head(source, item), trust, self.store.was_forwarded) is not None:
                return HopOutcome(item.name, "skipped", message="already forwarded")
            data = source.fetch(item, self.limits.max_bundle_bytes)
            bundle = receive_sealed(data, trust, self.clock(), self.limits, ("secrets", "audit"))
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

    def record(self, event_type: str, **fields: FieldValue) -> None:
        """Append to the hop's own audit chain."""
        with write_transaction(self.store.engine) as conn:
            log.append(sa_executor(conn), event_type, fields)
