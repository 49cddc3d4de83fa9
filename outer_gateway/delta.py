"""Delta bundles at the gateway (spec §8.3, ADR 0015): the change clock, the choice of a base,
and the rows a delta carries.

Every write of a secret takes the next value of the change clock (:func:`tick`) and stores it in
the row's ``changed`` column. An exported bundle records the clock's mark read *before* its rows
were read, and the grants it was built from (``export_bases``). When the agent's audit says it
applied that bundle (``bundle.applied``, :func:`note_agent_records`), the bundle may serve as
the base of a later delta, which then carries every row changed since the base's mark: the delta
is cumulative, so it applies on top of the base and of any later bundle of the stream.

A full bundle goes out instead when no acknowledged base is known (a new agent, a restored
gateway, an agent that refused a delta with ``delta_base_missing``), every
``export.full_every`` bundles, and when asked (``relay gateway export --full``).

Not this module's business: sealing, seqs and files (:mod:`outer_gateway.export`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from outer_gateway import schema
from relay.codes import DELTA_BASE_MISSING
from relay.db import bulk_execute, fetch_all, fetch_in, insert_rows, is_postgresql
from relay.paths import grant_matcher

if TYPE_CHECKING:
    from outer_gateway.store import GatewayStore

Row = tuple[str, int, bytes | None, int | None, bool]  # path, version, value, expires, deleted
_ROWS = "SELECT path, version, value, expires_at, deleted FROM secrets"
KEEP_UNACKED = 64  # export rows kept per agent beyond the newest acknowledged one
_EXPORT_COLUMNS = (
    ("agent", "text"),
    ("seq", "bigint"),
    ("bundle_id", "text"),
    ("mark", "bigint"),
    ("grants", "text"),
    ("full_state", "boolean"),
    ("acked", "boolean"),
    ("refused", "boolean"),
    ("created_at", "bigint"),
)


@dataclass(frozen=True)
class Base:
    """An acknowledged bundle a delta builds on."""

    seq: int
    bundle_id: str
    mark: int
    window: tuple[tuple[tuple[str, ...], int], ...]  # (grants, mark) of it and every later export


def tick(conn: Connection) -> int:
    """The next value of the change clock, taken in the caller's write transaction (the row
    stays locked until it commits, so an export's mark never passes an uncommitted change)."""
    t = schema.change_clock
    value = conn.execute(
        update(t).where(t.c.id == 1).values(n=t.c.n + 1).returning(t.c.n)
    ).scalar_one_or_none()
    if value is None:  # a store created from the schema: the clock starts here
        conn.execute(insert(t).values(id=1, n=1))
        return 1
    return int(value)


def read_mark(conn: Connection) -> int:
    """The change clock now: every committed change so far is at or below it."""
    t = schema.change_clock
    value = conn.execute(select(t.c.n).where(t.c.id == 1)).scalar_one_or_none()
    return 0 if value is None else int(value)


def choose_base(
    conn: Connection, agent: str, next_seq: int, grants: tuple[str, ...], full_every: int
) -> Base | None:
    """The newest acknowledged export of ``agent`` not older than a refused delta, or ``None``
    when the next bundle must be full (none known, or ``full_every`` bundles since a full one)."""
    return choose_bases(conn, {agent: next_seq}, full_every)[agent]


@dataclass(frozen=True)
class Heads:
    """What an agent's export rows say as a whole (seqs; ``None`` when no row is so)."""

    full: int | None  # the newest full bundle
    refused: int | None  # the newest refused delta
    acked: int | None  # the newest acknowledged bundle
    oldest: int  # the oldest row kept


def export_heads(conn: Connection, agents: Iterable[str]) -> dict[str, Heads]:
    """Each agent's :class:`Heads`, one aggregate row per agent (agents with no export row are
    left out). A pass reads them once per batch, for both :func:`choose_bases` and
    :func:`record_exports`."""
    sql = (
        "SELECT agent, max(CASE WHEN full_state THEN seq END), "
        "max(CASE WHEN refused THEN seq END), max(CASE WHEN acked THEN seq END), min(seq) "
        "FROM export_bases WHERE {where} GROUP BY agent"
    )
    return {
        str(agent): Heads(_seq_or_none(full), _seq_or_none(refused), _seq_or_none(acked), int(low))
        for agent, full, refused, acked, low in fetch_in(conn, sql, "agent", sorted(agents))
    }


def _seq_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def choose_bases(
    conn: Connection,
    next_seqs: Mapping[str, int],
    full_every: int,
    heads: Mapping[str, Heads] | None = None,
) -> dict[str, Base | None]:
    """:func:`choose_base` for several agents (``agent -> next seq``): their :class:`Heads`
    (read here unless given) say which may have a base, then only the rows from each candidate
    base on are read."""
    if heads is None:
        heads = export_heads(conn, next_seqs)
    since: dict[str, int] = {}  # agent -> its candidate base's seq
    for agent, held in heads.items():
        if agent not in next_seqs or held.full is None:
            continue
        if next_seqs[agent] - held.full >= full_every:
            continue
        if held.acked is not None and held.acked > (held.refused or 0):
            since[agent] = held.acked
    later: dict[str, list[tuple[Any, ...]]] = {agent: [] for agent in since}
    rows = (
        "SELECT agent, seq, bundle_id, mark, grants FROM export_bases "
        "WHERE {where} ORDER BY agent, seq"
    )
    for row in fetch_in(conn, rows, "agent", sorted(since)):
        if int(row[1]) >= since[str(row[0])]:
            later[str(row[0])].append(row[1:])
    return {agent: _base(later.get(agent, [])) for agent in next_seqs}


def _base(later: list[tuple[Any, ...]]) -> Base | None:
    """The base from its export row and every later one (seq, bundle_id, mark, grants; in seq
    order), or ``None`` when one of them is no longer known."""
    if not later:
        return None
    base = later[0]
    if len(later) != int(later[-1][0]) - int(base[0]) + 1:
        return None  # an export since the base is no longer known (pruned): its grants neither
    window = tuple((tuple(json.loads(r[3])), int(r[2])) for r in later)
    return Base(int(base[0]), str(base[1]), int(base[2]), window)


def delta_rows(
    store: GatewayStore,
    conn: Connection,
    base: Base,
    grants: tuple[str, ...],
    labelled: Iterable[str],
) -> list[Row] | None:
    """The rows a delta on ``base`` carries for an agent with ``grants`` now, sorted by path, or
    ``None`` when only a full bundle can say it.

    Every granted row changed since the base's mark; the current rows of the ``labelled`` paths
    (previous and pending versions need them); and when the grants changed in the window (the
    base and every later export: the states the agent may be in), by path only: every row
    visible now but not in every export of the window (an upsert), and a removal for every row
    an export of the window sent (it matched that export's grants and had not changed since its
    mark) that is not visible now. A path no longer granted that changed after every export that
    matched it may or may not be at the agent: naming it could tell the agent of a path it was
    never sent, so the bundle is full instead. Only paths granted now, or sent to the agent in
    the window, are ever named."""
    granted = _matcher(grants)
    rows = {
        r[0]: r for r in _fetch(conn, f"{_ROWS} WHERE changed > ?", (base.mark,)) if granted(r[0])
    }
    wanted = {path for path in labelled if path not in rows}
    if any(window_grants != grants for window_grants, _mark in base.window):
        window = [(_matcher(g), mark) for g, mark in base.window]
        for path, version, changed in fetch_all(conn, "SELECT path, version, changed FROM secrets"):
            marks = [mark for matches, mark in window if matches(path)]
            if granted(path):
                if len(marks) < len(window) and path not in rows:
                    wanted.add(path)  # visible now, not in every export of the window
            elif marks and changed <= max(marks):
                rows[path] = (path, int(version), None, None, True)  # sent before, not now
            elif marks:
                return None  # not granted now, changed since it was last visible: full
    rows.update((r[0], r) for r in _rows_of(conn, sorted(wanted)))
    return [_opened(store, rows[path]) for path in sorted(rows)]


@dataclass(frozen=True)
class Export:
    """One export to remember as a possible base (:func:`record_exports`)."""

    agent: str
    seq: int
    bundle_id: str
    mark: int
    grants: tuple[str, ...]
    full: bool


def record_export(
    conn: Connection,
    agent: str,
    seq: int,
    bundle_id: str,
    mark: int,
    grants: tuple[str, ...],
    full: bool,
    now: int,
) -> None:
    """Remember an export as a possible base, and forget the rows no base choice needs: those
    older than the newest acknowledged one, and unacknowledged ones beyond :data:`KEEP_UNACKED`
    (the newest full one is always kept)."""
    record_exports(conn, [Export(agent, seq, bundle_id, mark, grants, full)], now)


def record_exports(
    conn: Connection, exports: list[Export], now: int, heads: Mapping[str, Heads] | None = None
) -> None:
    """:func:`record_export` for several agents (one export each): one multi-row insert, one
    read of their rows and one batch of deletes, whatever the number of agents. ``heads``: the
    agents' :class:`Heads` read earlier in this transaction, with the agents locked (a pass's
    claim), which spares the read; an audit import that acknowledges a bundle meanwhile only
    makes this keep a row more until the next export."""
    if not exports:
        return
    insert_rows(
        conn,
        "export_bases",
        _EXPORT_COLUMNS,
        [
            (
                e.agent,
                e.seq,
                e.bundle_id,
                e.mark,
                json.dumps(list(e.grants)),
                e.full,
                False,
                False,
                now,
            )
            for e in exports
        ],
    )
    newest = {e.agent: e for e in exports}
    if heads is None:
        held = export_heads(conn, newest)  # the new rows among them
    else:
        held = {e.agent: _with_export(heads.get(e.agent), e) for e in exports}
    doomed: list[tuple[str, int, int]] = []  # (agent, below this seq, except this one)
    for agent, h in held.items():
        seq = newest[agent].seq
        floor = max(h.acked or 0, seq - KEEP_UNACKED)
        spare = seq if h.full is None else h.full
        if h.oldest < floor:
            doomed.append((agent, floor, spare))
    _prune(conn, doomed)


# One statement for the batch's prunes on PostgreSQL (a row of arrays joined to the table); a
# statement per agent elsewhere (SQLite, in process: executemany). On a gateway whose agents do
# not acknowledge (no audit return), every export prunes one row per agent: 250 statements a
# batch, 0.48 s of a 7.6 s pass on 10,000 agents.
_PRUNE = "DELETE FROM export_bases WHERE agent = ? AND seq < ? AND seq <> ?"
_PRUNE_ARRAYS = (
    "DELETE FROM export_bases e USING unnest(%b::text[], %b::bigint[], %b::bigint[]) "
    "AS d(agent, below, spare) WHERE e.agent = d.agent AND e.seq < d.below AND e.seq <> d.spare"
)


def _prune(conn: Connection, doomed: list[tuple[str, int, int]]) -> None:
    """Delete each agent's rows below its floor except its spare (``(agent, floor, spare)``)."""
    if not doomed:
        return
    if not is_postgresql(conn):
        bulk_execute(conn, _PRUNE, doomed)
        return
    agents, below, spare = (list(column) for column in zip(*doomed, strict=True))
    fetch_all(conn, _PRUNE_ARRAYS, [agents, below, spare])


def _with_export(heads: Heads | None, export: Export) -> Heads:
    """``heads`` once ``export`` is recorded (a new row: neither acknowledged nor refused)."""
    if heads is None:
        return Heads(export.seq if export.full else None, None, None, export.seq)
    full = max(heads.full or 0, export.seq) if export.full else heads.full
    return Heads(full, heads.refused, heads.acked, min(heads.oldest, export.seq))


def note_agent_records(conn: Connection, agent: str, records: Iterable[Any]) -> None:
    """Take acknowledgements and refusals from an agent's newly imported audit records:
    ``bundle.applied`` names a bundle the agent holds, ``bundle.rejected`` with reason
    ``delta_base_missing`` a delta it could not apply (no delta builds on what came before)."""
    t = schema.export_bases
    for record in records:
        bundle_id = record.fields.get("bundle_hash")
        if not isinstance(bundle_id, str):
            continue
        if record.type == "bundle.applied":
            change: dict[str, bool] = {"acked": True}
        elif record.type == "bundle.rejected" and record.fields.get("reason") == DELTA_BASE_MISSING:
            change = {"refused": True}
        else:
            continue
        conn.execute(
            update(t).where(t.c.agent == agent, t.c.bundle_id == bundle_id).values(**change)
        )


def forget_bases(conn: Connection) -> None:
    """No acknowledged base any more (a restored store): every agent's next bundle is full."""
    conn.execute(delete(schema.export_bases))


def _matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    compiled = grant_matcher(list(patterns))
    if compiled is None:
        return lambda _path: False
    match = compiled.fullmatch
    return lambda path: match(path) is not None


def _fetch(conn: Connection, sql: str, params: tuple[Any, ...]) -> list[Row]:
    return [_row(r) for r in fetch_all(conn, sql, params)]


def _row(raw: tuple[Any, ...]) -> Row:
    path, version, value, expires, deleted = raw
    return (path, int(version), value, expires, bool(deleted))


def _rows_of(conn: Connection, paths: list[str]) -> list[Row]:
    return [_row(r) for r in fetch_in(conn, _ROWS + " WHERE {where}", "path", paths)]


def _opened(store: GatewayStore, row: Row) -> Row:
    path, version, value, expires, deleted = row
    if value is None or store.codec.plain:
        return row
    return (path, version, store.codec.open(bytes(value)), expires, deleted)
