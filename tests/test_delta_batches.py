"""The batched base choice and export records of a ``gateway run`` pass (one query per batch,
outer_gateway/delta.py) answer exactly as the per-agent rules of ADR 0015 say, over many random
histories of export rows."""

from __future__ import annotations

import json
import random

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from outer_gateway import schema
from outer_gateway.delta import (
    KEEP_UNACKED,
    Base,
    Export,
    choose_bases,
    export_heads,
    record_exports,
)

Held = tuple[int, str, int, str, bool, bool, bool]  # seq, id, mark, grants, full, acked, refused


def _reference_choice(rows: list[Held], next_seq: int, full_every: int) -> Base | None:
    """ADR 0015's rule, agent by agent, over every row of the agent (in seq order)."""
    fulls = [r[0] for r in rows if r[4]]
    if not fulls or next_seq - fulls[-1] >= full_every:
        return None
    refused = max((r[0] for r in rows if r[6]), default=0)
    acked = [r for r in rows if r[5] and r[0] > refused]
    if not acked:
        return None
    base = acked[-1]
    later = [r for r in rows if r[0] >= base[0]]
    if len(later) != later[-1][0] - base[0] + 1:
        return None
    window = tuple((tuple(json.loads(r[3])), r[2]) for r in later)
    return Base(base[0], base[1], base[2], window)


def _reference_kept(rows: list[Held], seq: int) -> list[int]:
    """The seqs left after recording export ``seq`` (already among ``rows``)."""
    keep_from = max((r[0] for r in rows if r[5]), default=0)
    floor = max(keep_from, seq - KEEP_UNACKED)
    spare = max((r[0] for r in rows if r[4]), default=seq)
    return sorted(r[0] for r in rows if not (r[0] < floor and r[0] != spare))


def _history(rnd: random.Random, agent: str) -> list[Held]:
    rows: list[Held] = []
    seq = rnd.randint(1, 5)
    for _ in range(rnd.choice([0, 1, 2, 5, 30, KEEP_UNACKED + 10])):
        grants = json.dumps(rnd.choice([["db/**"], ["db/**", "x/*"]]))
        flags = (rnd.random() < 0.3, rnd.random() < 0.3, rnd.random() < 0.1)
        rows.append((seq, f"{agent}-{seq:04d}", seq * 7, grants, *flags))
        seq += 1 if rnd.random() < 0.9 else rnd.randint(2, 4)  # a pruned gap now and then
    return rows


def test_batched_choice_and_pruning_match_the_per_agent_rules() -> None:
    _check_against_the_rules(create_engine("sqlite://"))


@pytest.mark.slow
def test_the_same_on_postgresql(database: str) -> None:
    """PostgreSQL prunes a batch in one statement (arrays joined to the table)."""
    engine = create_engine(database)
    try:
        _check_against_the_rules(engine)
    finally:
        engine.dispose()


def _check_against_the_rules(engine: Engine) -> None:
    rnd = random.Random(20261130)
    schema.metadata.create_all(engine, tables=[schema.export_bases])
    t = schema.export_bases
    found = 0
    for round_ in range(20):
        histories = {f"a{i:03d}": _history(rnd, f"r{round_}a{i}") for i in range(40)}
        next_seqs = {
            a: (rows[-1][0] if rows else 0) + rnd.randint(1, 3) for a, rows in histories.items()
        }
        full_every = rnd.choice([2, 24, 1000])
        with engine.begin() as conn:
            conn.execute(t.delete())
            held_rows = [
                {
                    "agent": agent,
                    "seq": seq,
                    "bundle_id": bundle_id,
                    "mark": mark,
                    "grants": grants,
                    "full_state": full,
                    "acked": acked,
                    "refused": refused,
                    "created_at": 0,
                }
                for agent, rows in histories.items()
                for seq, bundle_id, mark, grants, full, acked, refused in rows
            ]
            if held_rows:
                conn.execute(t.insert(), held_rows)
            # A pass reads the heads once for both (odd rounds); alone, each reads its own.
            heads = export_heads(conn, next_seqs) if round_ % 2 else None
            chosen = choose_bases(conn, next_seqs, full_every, heads)
            found += sum(base is not None for base in chosen.values())
            assert chosen == {
                a: _reference_choice(histories[a], next_seqs[a], full_every) for a in histories
            }
            exports = [
                Export(a, next_seqs[a], f"new-{a}", 1, ("db/**",), rnd.random() < 0.5)
                for a in histories
            ]
            record_exports(conn, exports, 0, heads)
            for e in exports:
                new: Held = (e.seq, e.bundle_id, 1, "[]", e.full, False, False)
                held = conn.execute(t.select().where(t.c.agent == e.agent)).all()
                assert sorted(r.seq for r in held) == _reference_kept(
                    [*histories[e.agent], new], e.seq
                )
    assert found > 20  # deltas were chosen, not only full bundles
