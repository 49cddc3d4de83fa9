"""Forwarding: list the source, verify each bundle's sender and signature, put it to the
destination, remember it. Rejected files stay where they are, with their reason printed and
audited. The hop holds no recipient key: it cannot decrypt, and does not try."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from relay.audit import log
from relay.audit.record import FieldValue
from relay.bundle.seal import bundle_file_name
from relay.bundle.verify import Trust, verify_bundle
from relay.codes import NOT_TRUSTED
from relay.db import sa_executor, write_transaction
from relay.errors import BundleRejected, UsageError
from relay.home import Home
from relay.hop.store import HopStore
from relay.transport import (
    Destination,
    Pending,
    Source,
    TransportOptions,
    open_destination,
    open_source,
)


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
        self.max_bytes = int(home.config.get("limits.max_bundle_bytes"))

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
        if self.store.seen_name(item.name, item.size):
            return HopOutcome(item.name, "skipped", message="already forwarded")
        try:
            data = source.fetch(item, self.max_bytes)
            bundle = verify_bundle(data, trust, self.clock(), self.max_bytes, ("secrets", "audit"))
        except BundleRejected as exc:
            self.record("bundle.rejected", file=item.name, reason=exc.code)
            return HopOutcome(item.name, "rejected", exc.code, exc.message)
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
