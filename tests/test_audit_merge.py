"""The gateway's one merge of incoming audit records (``outer_gateway.audit_merge``), directly."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outer_gateway.audit_merge import Held, merge_incoming
from relay import frozen
from relay.audit.chain import AuditRecord
from relay.bundle.audit_payload import AuditPayload
from relay.errors import BundleRejected
from tests.test_audit_chain import make_chain, rechain, rehash

CHAIN = make_chain(12)
HEAD = CHAIN[-1]


def payload(records: Iterable[AuditRecord], head: AuditRecord = HEAD) -> AuditPayload:
    return AuditPayload("plant7", head.seq, head.hash, tuple(records))


def held(records: Iterable[AuditRecord]) -> dict[int, tuple[str, str]]:
    return {r.seq: (r.hash, r.prev_hash) for r in records}


def store(into: dict[int, tuple[str, str]], incoming: AuditPayload) -> tuple[int, int]:
    merge = merge_incoming(incoming, into)
    into.update(held(merge.new))
    return len(merge.new), merge.duplicates


def broken(incoming: AuditPayload, holding: Held, match: str) -> None:
    with pytest.raises(BundleRejected, match=match) as caught:
        merge_incoming(incoming, holding)
    assert caught.value.code == "chain_broken"


def test_new_records_come_out_sorted_and_copies_count_as_duplicates() -> None:
    merge = merge_incoming(payload([CHAIN[5], CHAIN[3], CHAIN[1], CHAIN[0]]), held(CHAIN[:2]))
    assert [r.seq for r in merge.new] == [4, 6]
    assert merge.duplicates == 2


def test_an_empty_bundle_merges_to_nothing() -> None:
    assert merge_incoming(payload([]), held(CHAIN)) == merge_incoming(payload([]), {})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 11), unique=True, max_size=5), st.randoms())
def test_a_split_export_merges_in_any_order(cuts: list[int], rnd: object) -> None:
    bounds = [0, *sorted(cuts), len(CHAIN)]
    parts = [payload(CHAIN[a:b]) for a, b in itertools.pairwise(bounds)]
    rnd.shuffle(parts)  # type: ignore[attr-defined]
    holding: dict[int, tuple[str, str]] = {}
    added = sum(store(holding, part)[0] for part in parts)
    assert added == len(CHAIN)
    assert holding == held(CHAIN)
    assert all(store(holding, part) == (0, len(part.records)) for part in parts)  # idempotent


def test_a_record_that_does_not_hash_is_broken() -> None:
    bad = frozen.replace(CHAIN[4], fields={"path": "db/cover"})
    broken(payload([bad]), held(CHAIN[:4]), "does not hash")


def test_a_rewritten_record_already_held_is_broken() -> None:
    forged = CHAIN[:3] + rechain([rehash(CHAIN[3], fields={"path": "db/cover"}), *CHAIN[4:]])
    broken(payload(forged, forged[-1]), held(CHAIN[:5]), "record 4 differs")


def test_a_record_that_does_not_link_to_the_one_held_before_it_is_broken() -> None:
    stray = rehash(CHAIN[5], prev_hash="ab" * 32)
    broken(payload([stray]), held(CHAIN[:5]), "record 6 does not link to record 5")


def test_a_record_the_held_one_after_it_does_not_link_to_is_broken() -> None:
    stray = rehash(CHAIN[5], fields={"path": "db/cover"})  # links back, but 7 does not link to it
    broken(payload([stray]), held(CHAIN[6:]), "record 7 does not link to record 6")


def test_record_one_must_start_the_chain() -> None:
    first = rehash(CHAIN[0], prev_hash="cd" * 32)
    broken(payload([first]), {}, "record 1 does not start the chain")


def test_the_same_seq_twice_in_one_bundle_is_broken() -> None:
    other = rehash(CHAIN[2], fields={"path": "db/x"})
    broken(payload([CHAIN[2], other]), {}, "appears twice")


def test_records_past_the_declared_head_or_unlike_it_are_broken() -> None:
    broken(payload(CHAIN, CHAIN[5]), {}, "past the declared head")
    fake_head = AuditPayload("plant7", HEAD.seq, "ef" * 32, tuple(CHAIN))
    broken(fake_head, {}, "at the declared head has another hash")


def test_nothing_is_returned_when_one_record_is_bad() -> None:
    holding = held(CHAIN[:3])
    with pytest.raises(BundleRejected):
        store(holding, payload([*CHAIN[3:8], rehash(CHAIN[8], prev_hash="00" * 32)]))
    assert holding == held(CHAIN[:3])
