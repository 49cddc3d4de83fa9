"""Splitting an audit export into bundles that each stay under the size cap.

Pure: records and sizes in, runs of records out. A backlog larger than one bundle (a flood of
audit records while the return link was down) becomes several bundles with consecutive ``seq``,
each under ``limits.max_bundle_bytes`` and ``limits.max_entries``, so the return stream never
wedges on a ``too_large`` bundle. The gateway merges them in any order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from relay import crypto
from relay.audit.chain import AuditRecord
from relay.audit.record import record_to_json
from relay.bundle.rotation_items import RotationItem
from relay.bundle.seal import seal_bundle
from relay.codes import TOO_LARGE
from relay.errors import UsageError
from relay.identity import PublicIdentity

Run = tuple[AuditRecord, ...]
_LARGEST = 2**53 - 1  # header numbers are at most this: the longest header they can make


# What the optional ``rotation`` member adds to a payload with at least one item, beyond the items
# and the commas between them (members are sorted, so it follows ``records``).
ROTATION_MEMBER = len(',"rotation":[]')
ItemWeights = Mapping[int, tuple[int, int]]  # record seq -> (bytes of its items' JSON, count)


def split_records(
    records: Sequence[AuditRecord],
    frame_bytes: int,
    cap_bytes: int,
    max_entries: int,
    items: ItemWeights | None = None,
) -> list[Run]:
    """Consecutive runs of ``records`` (at least one run, perhaps empty) such that each run's
    payload, ``frame_bytes`` plus each record's JSON and a separator between records, plus the
    rotation items riding with its records (``items``: their JSON bytes and count per record
    seq, see :func:`item_weights`), is at most ``cap_bytes`` and holds at most ``max_entries``
    records and as many items. ``too_large`` if one record alone (with its items) does not
    fit."""
    if max_entries < 1:
        raise UsageError("limits.max_entries must be at least 1 to export audit", code=TOO_LARGE)
    weights = items or {}
    runs: list[Run] = []
    run: list[AuditRecord] = []
    size, carried = frame_bytes, 0
    for record in records:
        item_bytes, count = weights.get(record.seq, (0, 0))
        length = len(record_to_json(record)) + (1 if run else 0)
        extra = 0 if not count else item_bytes + count + (0 if carried else ROTATION_MEMBER)
        full = run and (
            size + length + extra > cap_bytes
            or len(run) == max_entries
            or carried + count > max_entries
        )
        if full:
            runs.append(tuple(run))
            run, size, carried = [], frame_bytes, 0
            length -= 1
            extra = 0 if not count else item_bytes + count + ROTATION_MEMBER
        if size + length + extra > cap_bytes or count > max_entries:
            raise UsageError(
                f"audit record {record.seq} alone is over limits.max_bundle_bytes", code=TOO_LARGE
            )
        run.append(record)
        size += length + extra
        carried += count
    runs.append(tuple(run))
    return runs


def item_weights(
    items: Iterable[RotationItem], records: Sequence[AuditRecord]
) -> dict[int, tuple[int, int]]:
    """Per record seq, the JSON bytes and count of the rotation items that ride with it. An item
    whose record is not among ``records`` rides with the last one (as the export sends it)."""
    seqs = {record.seq for record in records}
    last = records[-1].seq if records else 0
    weights: dict[int, tuple[int, int]] = {}
    for item in items:
        at = item.seq if item.seq in seqs else last
        size, count = weights.get(at, (0, 0))
        weights[at] = (size + len(item_json(item)), count + 1)
    return weights


def item_json(item: RotationItem) -> bytes:
    """An item as the payload writes it (compact, members sorted)."""
    return json.dumps(item.to_json(), separators=(",", ":"), sort_keys=True).encode("utf-8")


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
