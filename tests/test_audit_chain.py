"""The audit chain: record codec, field guard and verify_chain (the gateway's merge is tested
in ``test_audit_merge.py``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay import frozen
from relay.audit.chain import (
    GENESIS_HASH,
    AuditRecord,
    ChainBreak,
    next_record,
    record_from_json,
    record_to_json,
    same_record,
    verify_chain,
)
from relay.audit.guard import UnsafeFieldError, guard_fields, is_secret_looking
from relay.audit.record import compute_hash
from relay.errors import BundleRejected

T0 = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)
TYPES = ["bundle.applied", "secret.read", "secret.denied", "bundle.rejected", "agent.started"]


def make_chain(n: int, session: str = "s1", start: AuditRecord | None = None) -> list[AuditRecord]:
    """``n`` valid records with varied types and fields, continuing ``start`` if given."""
    records: list[AuditRecord] = []
    prev = start
    for i in range(n):
        fields = {"path": f"db/plant{i}/password", "app": "cron", "bundle_seq": i, "ok": i % 2 == 0}
        rec = next_record(
            prev, session, TYPES[i % len(TYPES)], fields, T0 + timedelta(microseconds=i), i * 1000
        )
        records.append(rec)
        prev = rec
    return records


def rehash(record: AuditRecord, **changes: object) -> AuditRecord:
    """A forged copy: content changed and the hash recomputed, as an attacker with the log would."""
    forged = frozen.replace(record, **changes)  # type: ignore[arg-type]
    return frozen.replace(forged, hash=compute_hash(forged))


def rechain(records: list[AuditRecord]) -> list[AuditRecord]:
    """Re-link and re-hash every record in order: a wholesale rewrite of the log."""
    out: list[AuditRecord] = []
    prev_hash = records[0].prev_hash
    for rec in records:
        forged = rehash(rec, prev_hash=prev_hash)
        out.append(forged)
        prev_hash = forged.hash
    return out


# --- records and their codec ----------------------------------------------------------------


def test_first_record_starts_at_one_from_genesis() -> None:
    rec = next_record(None, "s1", "agent.started", {}, T0, 5)
    assert rec.seq == 1
    assert rec.prev_hash == GENESIS_HASH
    assert rec.time == "2026-11-29T10:00:00.000000Z"
    assert rec.hash == compute_hash(rec)


def test_next_record_links_to_previous() -> None:
    a, b = make_chain(2)
    assert b.seq == 2
    assert b.prev_hash == a.hash


def test_time_is_converted_to_utc_and_naive_time_refused() -> None:
    plus2 = datetime(2026, 11, 29, 12, 0, 0, 1, tzinfo=UTC).astimezone()
    assert next_record(None, "s", "a.b", {}, plus2, 0).time == "2026-11-29T12:00:00.000001Z"
    with pytest.raises(ValueError, match="timezone"):
        next_record(None, "s", "a.b", {}, datetime(2026, 1, 1), 0)


def test_hash_is_sha256_of_canonical_json_of_the_other_members() -> None:
    rec = next_record(None, "s1", "secret.read", {"path": "é/x", "n": 1}, T0, 7)
    body = json.loads(record_to_json(rec))
    del body["hash"]
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    import hashlib

    assert rec.hash == hashlib.sha256(canonical.encode()).hexdigest()


def test_json_round_trip_is_exact() -> None:
    for rec in make_chain(5):
        again = record_from_json(record_to_json(rec))
        assert same_record(rec, again)
        assert record_to_json(again) == record_to_json(rec)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("mono"),
        lambda d: d.update(extra=1),
        lambda d: d.update(seq="1"),
        lambda d: d.update(seq=True),
        lambda d: d.update(seq=0),
        lambda d: d.update(mono=1.5),
        lambda d: d.update(time="2026-11-29T10:00:00Z"),
        lambda d: d.update(time="2026-13-29T10:00:00.000000Z"),
        lambda d: d.update(type="Bundle Applied"),
        lambda d: d.update(session_id=""),
        lambda d: d.update(hash="ABC"),
        lambda d: d.update(prev_hash="0" * 63),
        lambda d: d.update(fields=[]),
        lambda d: d.update(fields={"path": ["x"]}),
        lambda d: d.update(fields={"Path": "x"}),
        lambda d: d.update(fields={"seq": 1}),
    ],
)
def test_strict_parse_refuses_malformed(mutate: object) -> None:
    d = json.loads(record_to_json(make_chain(1)[0]))
    mutate(d)  # type: ignore[operator]
    with pytest.raises(BundleRejected) as info:
        record_from_json(json.dumps(d))
    assert info.value.code == "malformed"


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"seq": NaN}', '{"seq": 1, "seq": 2}', "{" + " " * 70_000 + "}"],
)
def test_strict_parse_refuses_non_records(text: str) -> None:
    with pytest.raises(BundleRejected) as info:
        record_from_json(text)
    assert info.value.code == "malformed"


def test_fields_are_read_only() -> None:
    rec = make_chain(1)[0]
    with pytest.raises(TypeError):
        rec.fields["path"] = "x"  # type: ignore[index]


# --- the field guard ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "value",
        "secret",
        "password",
        "db_password",
        "api_token",
        "private_key",
        "new_value",
        "secret_hash",
        "passphrase",
        "key",
    ],
)
def test_guard_refuses_secret_looking_names(name: str) -> None:
    assert is_secret_looking(name)
    with pytest.raises(UnsafeFieldError) as info:
        next_record(None, "s", "secret.read", {"path": "a/b", name: "PLANTED-9f3c"}, T0, 0)
    assert "PLANTED-9f3c" not in str(info.value)


@pytest.mark.parametrize(
    "name",
    [
        "path",
        "reason",
        "bundle_seq",
        "bundle_hash",
        "app",
        "user",
        "secret_path",
        "token_id",
        "key_id",
        "value_len",
        "grant",
    ],
)
def test_guard_lets_metadata_through(name: str) -> None:
    assert not is_secret_looking(name)
    assert guard_fields({name: "x"}) == {name: "x"}


def test_guard_allow_list_is_explicit() -> None:
    assert guard_fields({"token": "t-1"}, allow={"token"}) == {"token": "t-1"}


@pytest.mark.parametrize(
    "fields",
    [
        {"path": b"x"},
        {"path": float("nan")},
        {"path": {"a": 1}},
        {"a-b": 1},
        {"agent": "x"},
        {"path": "\ud800"},
        {f"f{i}": i for i in range(33)},
        {"path": "x" * 5000},
    ],
)
def test_guard_refuses_bad_structure(fields: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        guard_fields(fields)  # type: ignore[arg-type]


# --- verify_chain ---------------------------------------------------------------------------


def test_valid_chain_verifies_clean() -> None:
    report = verify_chain(make_chain(10))
    assert report.ok
    assert (report.count, report.high, report.contiguous_high) == (10, 10, 10)
    assert report.head_hash == make_chain(10)[-1].hash


def test_empty_input() -> None:
    report = verify_chain([])
    assert report.ok
    assert report.contiguous_high == 0
    assert report.head_hash == GENESIS_HASH


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30).flatmap(lambda n: st.tuples(st.just(n), st.randoms())))
def test_any_permutation_with_duplicates_verifies_clean(case: tuple[int, object]) -> None:
    n, rnd = case
    chain = make_chain(n)
    mixed = chain + [rnd.choice(chain) for _ in range(rnd.randint(0, n))]  # type: ignore[attr-defined]
    rnd.shuffle(mixed)  # type: ignore[attr-defined]
    report = verify_chain(mixed)
    assert report.ok
    assert report.contiguous_high == n
    assert report.duplicates == len(mixed) - n


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 30).flatmap(lambda n: st.tuples(st.just(n), st.integers(2, n - 1))))
def test_deleting_middle_records_reports_the_exact_gap(case: tuple[int, int]) -> None:
    n, first = case
    chain = make_chain(n)
    last = min(first + 2, n - 1)
    kept = [r for r in chain if not first <= r.seq <= last]
    report = verify_chain(kept)
    assert report.gaps == ((first, last),)
    assert report.breaks == ()
    assert report.contiguous_high == first - 1
    assert report.high == n


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 30).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n - 1))))
def test_truncating_the_tail_lowers_the_mark_without_a_gap(case: tuple[int, int]) -> None:
    n, keep = case
    report = verify_chain(make_chain(n)[:keep])
    assert report.ok
    assert report.contiguous_high == keep


def test_gap_filled_later_is_no_longer_reported() -> None:
    chain = make_chain(10)
    first_bundle, late_bundle = chain[:3] + chain[7:], chain[3:7]
    assert verify_chain(first_bundle).gaps == ((4, 7),)
    report = verify_chain(first_bundle + late_bundle)
    assert report.ok
    assert report.contiguous_high == 10


def test_edited_field_without_rehash_is_hash_mismatch() -> None:
    chain = make_chain(6)
    chain[3] = frozen.replace(chain[3], fields={"path": "db/other"})
    report = verify_chain(chain)
    assert report.breaks == (ChainBreak(4, "hash_mismatch"),)


def test_edited_field_with_rehash_breaks_the_next_link() -> None:
    chain = make_chain(6)
    chain[3] = rehash(chain[3], fields={"path": "db/other"})
    assert verify_chain(chain).breaks == (ChainBreak(5, "link_broken"),)


def test_swapped_pair_is_a_break() -> None:
    chain = make_chain(6)
    a, b = chain[2], chain[3]
    swapped = [*chain[:2], frozen.replace(b, seq=3), frozen.replace(a, seq=4), *chain[4:]]
    kinds = {(x.seq, x.kind) for x in verify_chain(swapped).breaks}
    assert (3, "hash_mismatch") in kinds
    assert (4, "hash_mismatch") in kinds
    relinked = [*chain[:2], rehash(b, seq=3, prev_hash=chain[1].hash)]
    relinked.append(rehash(a, seq=4, prev_hash=relinked[-1].hash))
    kinds = {(x.seq, x.kind) for x in verify_chain(relinked + chain[4:]).breaks}
    assert kinds == {(5, "link_broken")}


def test_wholesale_rewrite_verifies_alone_but_conflicts_with_held_copy() -> None:
    chain = make_chain(8)
    forged = chain[:3] + rechain([rehash(chain[3], fields={"path": "db/cover"}), *chain[4:]])
    assert verify_chain(forged).ok  # the chain alone cannot tell: whoever holds it can rewrite it
    merged = verify_chain(chain[:5] + forged)
    assert {(b.seq, b.kind) for b in merged.breaks} == {(s, "conflict") for s in range(4, 6)}


def test_anchor_detects_a_rewrite_before_what_is_held() -> None:
    chain = make_chain(8)
    anchor = (4, chain[3].hash)
    assert verify_chain(chain[4:], anchor=anchor).ok
    forged = rechain([rehash(chain[0], fields={"path": "db/cover"}), *chain[1:]])
    report = verify_chain(forged, anchor=anchor)
    assert ChainBreak(4, "conflict", "differs from the anchor") in report.breaks
    assert ChainBreak(5, "link_broken") in report.breaks
    assert report.ignored == 3


def test_anchor_continuation_and_gap_after_anchor() -> None:
    chain = make_chain(10)
    report = verify_chain(chain[6:], anchor=(4, chain[3].hash))
    assert report.gaps == ((5, 6),)
    assert report.contiguous_high == 4
    assert report.head_hash == chain[3].hash


def test_conflicting_copies_are_reported_whatever_the_order() -> None:
    chain = make_chain(5)
    other = rehash(chain[2], fields={"path": "db/x"})
    for records in ([*chain, other], [other, *chain], [*reversed(chain), other]):
        report = verify_chain(records)
        assert ChainBreak(3, "conflict", "2 different records") in report.breaks
        assert report.head_hash == chain[-1].hash


# --- properties over tampering -------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 20).flatmap(lambda n: st.tuples(st.just(n), st.integers(2, n - 1))))
def test_swapping_any_adjacent_pair_breaks_the_chain(case: tuple[int, int]) -> None:
    n, i = case
    chain = make_chain(n)
    a, b = chain[i - 1], chain[i]
    swapped = [*chain[: i - 1], rehash(b, seq=a.seq), rehash(a, seq=b.seq), *chain[i + 1 :]]
    report = verify_chain(swapped)
    assert not report.ok
    assert {x.kind for x in report.breaks} == {"link_broken"}


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 20).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n))))
def test_any_rewrite_is_caught_against_the_held_copy_or_an_anchor(case: tuple[int, int]) -> None:
    n, k = case
    chain = make_chain(n)
    start = chain[k - 2].hash if k > 1 else GENESIS_HASH
    tail = rechain([rehash(chain[k - 1], fields={"path": "db/cover"}, prev_hash=start), *chain[k:]])
    forged = chain[: k - 1] + tail
    assert verify_chain(forged).ok  # on its own, a wholesale rewrite verifies
    held = verify_chain(chain + forged)
    assert {b.seq for b in held.breaks if b.kind == "conflict"} == set(range(k, n + 1))
    anchor_report = verify_chain(forged, anchor=(n, chain[-1].hash))
    assert ChainBreak(n, "conflict", "differs from the anchor") in anchor_report.breaks


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 15).flatmap(lambda n: st.tuples(st.just(n), st.randoms())))
def test_report_never_depends_on_order_even_when_tampered(case: tuple[int, object]) -> None:
    n, rnd = case
    chain = make_chain(n)
    victim = rnd.randrange(n)  # type: ignore[attr-defined]
    chain.append(rehash(chain[victim], fields={"path": "db/other"}))
    del chain[rnd.randrange(len(chain))]  # type: ignore[attr-defined]
    shuffled = list(chain)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert verify_chain(shuffled) == verify_chain(chain)
