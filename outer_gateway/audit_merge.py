"""The one merge of an agent's incoming audit records into what the gateway holds.

Pure: the decoded payload of one audit bundle and the records held for that agent (``seq`` to
``(hash, prev_hash)``) in, the records to store out. Audit records are facts, so bundles may
arrive in any order (two USB sticks, a diode carousel, an export split into several bundles):
records are merged by ``seq``, an identical copy is a duplicate, and nothing is refused for being
old. What cannot be true together with what is held is ``chain_broken`` and nothing is stored:

- a record whose ``hash`` does not recompute from its content;
- a record for a ``seq`` already held (or already in this bundle) with another hash;
- a link that does not hold: a record's ``prev_hash`` is not the hash held for ``seq - 1``, or the
  record held for ``seq + 1`` does not link to it; record 1 must start from the genesis hash;
- a record past the declared head, or at the head's ``seq`` with another hash.

A head below one already seen is *not* refused here (an older bundle may arrive late); whether the
agent's head ever went backwards is a question about the bundles' order, answered by
``gateway audit verify`` (:mod:`outer_gateway.audit_verify`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from relay.audit.chain import GENESIS_HASH, AuditRecord
from relay.audit.record import compute_hash
from relay.bundle.audit_payload import AuditPayload
from relay.codes import CHAIN_BROKEN
from relay.errors import BundleRejected

Held = Mapping[int, tuple[str, str]]  # seq -> (hash, prev_hash)


@dataclass(frozen=True)
class Merge:
    """The records to store (sorted by ``seq``) and how many were already held."""

    new: tuple[AuditRecord, ...]
    duplicates: int


def merge_incoming(payload: AuditPayload, held: Held) -> Merge:
    """Merge ``payload``'s records into ``held``; ``chain_broken`` if they cannot all be true."""
    _check_head(payload)
    hashes = {seq: h for seq, (h, _) in held.items()}
    prevs = {seq: p for seq, (_, p) in held.items()}
    new: dict[int, AuditRecord] = {}
    duplicates = 0
    for record in payload.records:
        if compute_hash(record) != record.hash:
            raise _broken(f"record {record.seq} does not hash to its hash")
        if record.seq in new:
            raise _broken(f"record {record.seq} appears twice")
        known = hashes.get(record.seq)
        if known is not None:
            if known != record.hash:
                raise _broken(f"record {record.seq} differs from the one already held")
            duplicates += 1
            continue
        new[record.seq] = record
        hashes[record.seq] = record.hash
        prevs[record.seq] = record.prev_hash
    for seq in set(new) | {seq + 1 for seq in new}:
        _check_link(seq, hashes, prevs)
    return Merge(tuple(new[s] for s in sorted(new)), duplicates)


def _check_head(payload: AuditPayload) -> None:
    for record in payload.records:
        if record.seq > payload.head_seq:
            raise _broken(f"record {record.seq} is past the declared head {payload.head_seq}")
        if record.seq == payload.head_seq and record.hash != payload.head_hash:
            raise _broken("the record at the declared head has another hash")


def _check_link(seq: int, hashes: Mapping[int, str], prevs: Mapping[int, str]) -> None:
    if seq not in prevs:
        return
    if seq == 1:
        if prevs[seq] != GENESIS_HASH:
            raise _broken("record 1 does not start the chain")
    elif seq - 1 in hashes and prevs[seq] != hashes[seq - 1]:
        raise _broken(f"record {seq} does not link to record {seq - 1}")


def _broken(message: str) -> BundleRejected:
    return BundleRejected(message, code=CHAIN_BROKEN)
