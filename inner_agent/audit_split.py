"""Splitting an audit export into bundles that each stay under the size cap.

Pure: records and sizes in, runs of records out. A backlog larger than one bundle (a flood of
audit records while the return link was down) becomes several bundles with consecutive ``seq``,
each under ``limits.max_bundle_bytes`` and ``limits.max_entries``, so the return stream never
wedges on a ``too_large`` bundle. The gateway merges them in any order.
"""

from __future__ import annotations

from collections.abc import Sequence

from relay import crypto
from relay.audit.chain import AuditRecord
from relay.audit.record import record_to_json
from relay.bundle.seal import seal_bundle
from relay.codes import TOO_LARGE
from relay.errors import UsageError
from relay.identity import PublicIdentity

Run = tuple[AuditRecord, ...]
_LARGEST = 2**53 - 1  # header numbers are at most this: the longest header they can make


def split_records(
    records: Sequence[AuditRecord], frame_bytes: int, cap_bytes: int, max_entries: int
) -> list[Run]:
    """Consecutive runs of ``records`` (at least one run, perhaps empty) such that each run's
    payload, ``frame_bytes`` plus each record's JSON and a separator between records, is at most
    ``cap_bytes`` and holds at most ``max_entries`` records. ``too_large`` if one record alone
    does not fit."""
    if max_entries < 1:
        raise UsageError("limits.max_entries must be at least 1 to export audit", code=TOO_LARGE)
    runs: list[Run] = []
    run: list[AuditRecord] = []
    size = frame_bytes
    for record in records:
        length = len(record_to_json(record)) + (1 if run else 0)
        if run and (size + length > cap_bytes or len(run) == max_entries):
            runs.append(tuple(run))
            run, size, length = [], frame_bytes, length - 1
        if size + length > cap_bytes:
            raise UsageError(
                f"audit record {record.seq} alone is over limits.max_bundle_bytes", code=TOO_LARGE
            )
        run.append(record)
        size += length
    runs.append(tuple(run))
    return runs


def envelope_overhead(
    sender: PublicIdentity, keys: crypto.KeyPair, recipient: PublicIdentity
) -> int:
    """The most bytes a bundle adds around its plaintext (header, signature, box)."""
    sealed = seal_bundle(
        kind="audit",
        sender=sender,
        keys=keys,
        recipient=recipient,
        seq=_LARGEST,
        created=_LARGEST,
        expires=_LARGEST,
        plaintext=b"",
    )
    return len(sealed)
