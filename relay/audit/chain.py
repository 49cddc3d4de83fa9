"""The audit hash chain: append a record, verify what is held.

Pure: records and a clock reading in, records and reports out. Persisting records, sealing them
into audit bundles and deciding what to acknowledge are the callers' business (the agent and
gateway stores; the gateway's merge of incoming records is
:func:`outer_gateway.audit_merge.merge_incoming`). See ``docs/audit.md`` for the format and for
what the chain can and cannot prove.

Example::

    from datetime import UTC, datetime
    import time
    r1 = next_record(None, "s1", "agent.started", {}, datetime.now(UTC), time.monotonic_ns())
    r2 = next_record(r1, "s1", "secret.read", {"path": "db/x", "app": "cron"},
                     datetime.now(UTC), time.monotonic_ns())
    assert verify_chain([r2, r1]).ok
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Literal

from relay.audit.guard import guard_fields
from relay.audit.record import (
    GENESIS_HASH,
    AuditRecord,
    FieldValue,
    canonical_bytes,
    check_session_id,
    check_type,
    format_time,
    hash_body,
    record_from_dict,
    record_from_json,
    record_to_dict,
    record_to_json,
)
from relay.frozen import frozen

__all__ = [
    "GENESIS_HASH",
    "AuditRecord",
    "ChainBreak",
    "ChainReport",
    "next_record",
    "record_from_dict",
    "record_from_json",
    "record_to_dict",
    "record_to_json",
    "same_record",
    "verify_chain",
]

BreakKind = Literal["hash_mismatch", "link_broken", "conflict"]


def next_record(
    prev: AuditRecord | None,
    session_id: str,
    type: str,
    fields: Mapping[str, FieldValue],
    now: datetime,
    mono: int,
    *,
    allow: Collection[str] = (),
) -> AuditRecord:
    """The record that follows ``prev`` (``None``: the very first record, seq 1).

    ``fields`` pass the guard (:func:`relay.audit.guard.guard_fields`); ``allow`` names fields the
    caller vouches for. ``now`` must be timezone-aware; ``mono`` is ``time.monotonic_ns()``.
    Raises ``ValueError`` (``UnsafeFieldError`` for secret-looking names) on misuse.
    """
    check_session_id(session_id)
    check_type(type)
    if isinstance(mono, bool) or not isinstance(mono, int) or mono < 0:
        raise ValueError("mono must be a non-negative int of nanoseconds")
    body: dict[str, object] = {
        "seq": 1 if prev is None else prev.seq + 1,
        "session_id": session_id,
        "time": format_time(now),
        "mono": mono,
        "type": type,
        "fields": guard_fields(fields, allow),
        "prev_hash": GENESIS_HASH if prev is None else prev.hash,
    }
    digest = hashlib.sha256(canonical_bytes(body)).hexdigest()
    return AuditRecord(hash=digest, **body)  # type: ignore[arg-type]


def same_record(a: AuditRecord, b: AuditRecord) -> bool:
    """True if ``a`` and ``b`` encode identically (``==`` confuses ``1``, ``1.0``, ``True``)."""
    return a.hash == b.hash and hash_body(a) == hash_body(b)


@frozen
class ChainBreak:
    """A place where the chain does not hold. ``kind``:

    - ``hash_mismatch``: the record's ``hash`` does not recompute from its content;
    - ``link_broken``: its ``prev_hash`` is not the hash of the record before it (or the anchor);
    - ``conflict``: two different records claim this ``seq`` (or it differs from the anchor).
    """

    seq: int
    kind: BreakKind
    detail: str = ""


@frozen
class ChainReport:
    """What :func:`verify_chain` found.

    ``gaps`` are missing seq ranges, both ends inclusive, between the start and ``high``.
    ``contiguous_high`` is the highest seq such that every seq from the start up to it is held:
    the acknowledgement mark. ``head_hash`` is the hash at that mark (the next anchor), ``None``
    if that seq is in conflict.
    """

    count: int
    duplicates: int
    ignored: int
    high: int
    contiguous_high: int
    head_hash: str | None
    gaps: tuple[tuple[int, int], ...]
    breaks: tuple[ChainBreak, ...]

    @property
    def ok(self) -> bool:
        """No gap and no break."""
        return not self.gaps and not self.breaks


_Versions = dict[int, list[tuple[bytes, AuditRecord]]]


def verify_chain(
    records: Iterable[AuditRecord], anchor: tuple[int, str] | None = None
) -> ChainReport:
    """Verify the records of ONE agent, in any order, duplicates allowed.

    Without ``anchor`` the chain must start at seq 1 from the genesis hash. With
    ``anchor=(seq, hash)`` (a record already verified and held) the chain must continue from it:
    a record at the anchor's seq must carry that hash (else ``conflict``), the next one must link
    to it, and records below the anchor are ignored (counted in ``ignored``).
    """
    base_seq, base_hash = anchor if anchor is not None else (0, GENESIS_HASH)
    versions, duplicates, ignored = _group(records, base_seq)
    breaks: list[ChainBreak] = []
    for seq in sorted(versions):
        breaks.extend(_check_seq(seq, versions, base_seq, base_hash))
    high = max(versions, default=base_seq)
    contiguous = base_seq
    while contiguous + 1 in versions:
        contiguous += 1
    return ChainReport(
        count=sum(len(v) for v in versions.values()),
        duplicates=duplicates,
        ignored=ignored,
        high=max(high, base_seq),
        contiguous_high=contiguous,
        head_hash=_head_hash(versions, contiguous, base_seq, base_hash),
        gaps=tuple(_gaps(versions, base_seq)),
        breaks=tuple(breaks),
    )


def _group(records: Iterable[AuditRecord], base_seq: int) -> tuple[_Versions, int, int]:
    """Distinct versions per seq, sorted by hash (so the outcome never depends on input order)."""
    seen: dict[int, dict[tuple[bytes, str], AuditRecord]] = {}
    duplicates = ignored = 0
    for record in records:
        if record.seq < base_seq:
            ignored += 1
            continue
        key = (hash_body(record), record.hash)
        slot = seen.setdefault(record.seq, {})
        if key in slot:
            duplicates += 1
        slot[key] = record
    versions = {
        seq: sorted(
            ((body, rec) for (body, _), rec in slot.items()), key=lambda v: (v[1].hash, v[0])
        )
        for seq, slot in seen.items()
    }
    return versions, duplicates, ignored


def _check_seq(seq: int, versions: _Versions, base_seq: int, base_hash: str) -> list[ChainBreak]:
    here = versions[seq]
    breaks: list[ChainBreak] = []
    if len(here) > 1:
        breaks.append(ChainBreak(seq, "conflict", f"{len(here)} different records"))
    if any(hashlib.sha256(body).hexdigest() != rec.hash for body, rec in here):
        breaks.append(ChainBreak(seq, "hash_mismatch"))
    if seq == base_seq and base_seq > 0 and all(rec.hash != base_hash for _, rec in here):
        breaks.append(ChainBreak(seq, "conflict", "differs from the anchor"))
    if seq > base_seq:
        before = _hashes_before(seq, versions, base_seq, base_hash)
        if before is not None and all(rec.prev_hash not in before for _, rec in here):
            breaks.append(ChainBreak(seq, "link_broken"))
    return breaks


def _hashes_before(
    seq: int, versions: _Versions, base_seq: int, base_hash: str
) -> frozenset[str] | None:
    """Hashes ``seq`` may link to; ``None`` when the record before it is missing (a gap)."""
    if seq - 1 == base_seq:
        return frozenset({base_hash})
    if seq - 1 in versions:
        return frozenset(rec.hash for _, rec in versions[seq - 1])
    return None


def _head_hash(versions: _Versions, seq: int, base_seq: int, base_hash: str) -> str | None:
    if seq == base_seq:
        return base_hash
    here = versions[seq]
    return here[0][1].hash if len(here) == 1 else None


def _gaps(versions: _Versions, base_seq: int) -> list[tuple[int, int]]:
    gaps: list[tuple[int, int]] = []
    expected = base_seq + 1
    for seq in sorted(s for s in versions if s > base_seq):
        if seq > expected:
            gaps.append((expected, seq - 1))
        expected = seq + 1
    return gaps
