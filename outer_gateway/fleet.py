"""Scheduled export passes (``relay gateway run``): every agent once per period, the work
divided among the gateway processes that share one store (ADR 0016).

Time is cut into periods of ``export.every`` seconds, aligned on the epoch. An agent is *due*
when its ``next_export_at`` is unset or has come. A pass claims due agents in batches: in one
write transaction it selects a batch (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so another
process takes the next batch instead of waiting; SQLite has one writer at a time), reserves each
agent's next seq, seals each bundle, appends each ``bundle.exported`` record, and sets
``next_export_at`` to the start of the next period; then it commits, and only then writes the
files. So:

- an agent is exported at most once per period, by whichever process claimed it;
- a process killed before its commit holds no claim (the transaction is rolled back and its
  row locks released): another process's pass, or the next one, takes those agents;
- a process killed after its commit leaves spent seqs and their records for files that never
  appeared (as ``relay gateway export`` does, docs/crash-consistency.md): those agents are due
  again in the next period, whoever runs it.

Every full bundle of a pass is built from one read of the store (:class:`ExportView`); a delta
reads only the rows changed since its base (:mod:`outer_gateway.delta`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy.engine import Connection

from outer_gateway.audit import GatewayAudit, lock_audit_chain
from outer_gateway.delta import Base, Export, choose_bases, export_heads, record_exports
from outer_gateway.dispatch import exported_fields
from outer_gateway.export import (
    ENVELOPE_ALLOWANCE,
    ExportedBundle,
    content_on,
    exported,
    grant_patterns,
    seal_content,
    trust_section,
)
from outer_gateway.export_view import ExportView
from outer_gateway.online_key import online_keys
from outer_gateway.store import GatewayStore
from relay import crashpoint
from relay.audit import log
from relay.codes import TOO_LARGE
from relay.db import any_of, fetch_all, insert_rows, sa_executor, write_transaction
from relay.home import Home
from relay.identity import PublicIdentity
from relay.transport import Destination

# Agents claimed, sealed and committed together. 250 rather than 100: fewer per-batch queries
# and commits, 0.4-0.6 s less CPU a pass on PostgreSQL (docs/performance.md); a batch is
# ~0.2 s of work, the most one process can be left finishing alone at the end of a pass.
CLAIM_BATCH = 250

# Due agents with a grant and not revoked, after a name (a pass walks the names in order). The
# name bound is given to the grants too: PostgreSQL carries equalities across a join, not
# ranges, and its merge join otherwise read the grants index from the first agent for every
# batch (a pass read it 40 times over, 5 to 12 ms a batch instead of 1 to 2 on 10,000 agents).
_DUE = (
    "SELECT name, sign_public, box_public, last_seq FROM agents a "
    "WHERE (next_export_at IS NULL OR next_export_at <= ?) AND name > ? "
    "AND EXISTS (SELECT 1 FROM grants g WHERE g.agent = a.name AND g.agent > ?) "
    "AND NOT EXISTS (SELECT 1 FROM agent_revocations r WHERE r.name = a.name) "
    "ORDER BY name LIMIT ?"
)
# Under the batch's row locks, so last_seq + 1 is the seq each bundle was sealed with.
_CLAIMED = "UPDATE agents SET last_seq = last_seq + 1, last_export = ?, next_export_at = ? WHERE "
_DEFERRED = "UPDATE agents SET next_export_at = ? WHERE "


def period_end(now: int, every: int) -> int:
    """The start of the period after the one ``now`` is in (periods aligned on the epoch)."""
    return (now // every + 1) * every


@dataclass
class PassReport:
    """What one pass did: one dict per bundle written, and the agents it could not export."""

    written: list[dict[str, Any]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (agent, code, message)


@dataclass(frozen=True)
class _Claimed:
    bundle: ExportedBundle
    ack: int


class ExportPass:
    """One period's pass over the due agents, by one process (see the module's docstring)."""

    def __init__(
        self,
        home: Home,
        store: GatewayStore,
        now: int,
        every: int,
        valid_for: int,
        batch: int = CLAIM_BATCH,
    ) -> None:
        self.home, self.store, self.now = home, store, now
        self.next_at = period_end(now, every)
        self.valid_for, self.batch = valid_for, batch
        self.cap = int(home.config.get("limits.max_bundle_bytes"))
        self._full_every = int(home.config.get("export.full_every"))
        self._view: ExportView | None = None
        self._trust: dict[str, Any] | None = None
        self._trusted = False
        self._keys: tuple[Any, Any] | None = None
        self._after, self._rescanned = "", False
        self._begun: Callable[[], None] | None = None  # names and reports the last batch's files

    def run(
        self, destination: Destination, on_written: Callable[[dict[str, Any]], None]
    ) -> PassReport:
        """Claim, seal and commit a batch, then write its files; until no agent is due.

        One thread does it all (ADR 0026). A batch's files are written, then made durable by the
        destination's sync thread where it has one (a folder) while the next batch is claimed
        and sealed; they are named and reported before that batch commits. So a process killed
        during a pass has spent the seqs of one batch at most without writing their files."""
        report = PassReport()
        audit = GatewayAudit(self.home, self.store.engine)
        try:
            while (claimed := self.claim_batch(report)) is not None:
                named = _begin_all(destination, claimed)
                self._begun = partial(_written, claimed, named, report, on_written)
                audit.deliver()
        finally:
            self._finish_begun()  # the last batch's, or one committed before a failure
        return report

    def _finish_begun(self) -> None:
        """Name and report the files of the batch begun last (its seqs are committed)."""
        begun, self._begun = self._begun, None
        if begun is not None:
            begun()

    def claim_batch(self, report: PassReport) -> list[_Claimed] | None:
        """Claim up to ``batch`` due agents and commit their seqs, records and next period;
        returns the sealed bundles (not yet written), or ``None`` when no agent is due.

        The pass walks the names in order; at the end it looks once more from the start, for
        agents another process had claimed and then let go (killed before its commit)."""
        with write_transaction(self.store.engine) as conn:
            rows = self._due(conn)
            if not rows and self._after and not self._rescanned:
                self._after, self._rescanned = "", True
                rows = self._due(conn)
            if not rows:
                return None
            self._after = str(rows[-1][0])
            names = [str(r[0]) for r in rows]
            acks = audit_marks(conn, names)
            patterns = grant_patterns(conn, names)
            heads = export_heads(conn, names)  # for the base choice and the records
            next_seqs = {str(r[0]): int(r[3]) + 1 for r in rows}
            bases = choose_bases(conn, next_seqs, self._full_every, heads)
            claimed: list[_Claimed] = []
            exports: list[Export] = []
            deferred: list[str] = []
            for name, sign_public, box_public, last_seq in rows:
                identity = PublicIdentity("agent", name, bytes(sign_public), bytes(box_public))
                ack = acks.get(name, 0)
                sealed = self._seal(
                    conn, identity, int(last_seq) + 1, ack, patterns[name], bases[name]
                )
                if sealed is None:
                    report.failed.append((name, TOO_LARGE, "bundle over limits.max_bundle_bytes"))
                    deferred.append(name)
                    continue
                claimed.append(_Claimed(sealed[0], ack))
                exports.append(sealed[1])
            record_exports(conn, exports, self.now, heads)  # each a possible later base
            execute = sa_executor(conn)
            names = [c.bundle.agent for c in claimed]
            if names:
                where, params = any_of(conn, "name", names)
                execute(_CLAIMED + where, [self.now, self.next_at, *params])
            if deferred:
                where, params = any_of(conn, "name", deferred)
                execute(_DEFERRED + where, [self.next_at, *params])
            fields = [("bundle.exported", exported_fields(c.bundle, c.ack)) for c in claimed]
            self._finish_begun()  # the previous batch's files named before this one commits
            lock_audit_chain(conn)  # held until the commit: as little as possible after it
            records = log.chain_many(execute, fields)
            insert_rows(conn, "audit_log", log.ROW_COLUMNS, [log.row_of(r) for r in records])
            crashpoint.reached("export.sealed")
        crashpoint.reached("export.committed")
        return claimed

    def _due(self, conn: Connection) -> list[tuple[Any, ...]]:
        """Up to a batch of due agents after :attr:`_after`, locked (skipping those another
        process holds) on PostgreSQL."""
        sql = _DUE + " FOR UPDATE SKIP LOCKED" if conn.dialect.name == "postgresql" else _DUE
        return fetch_all(conn, sql, (self.now, self._after, self._after, self.batch))

    def _view_of_pass(self) -> ExportView:
        if self._view is None:  # read only when a full bundle is due
            self._view = ExportView(self.store, self.now)
        return self._view

    def _trust_of_pass(self) -> dict[str, Any] | None:
        if not self._trusted:  # read once, by a process that has work
            self._trust, self._trusted = trust_section(self.home, self.now), True
        return self._trust

    def _seal(
        self,
        conn: Connection,
        agent: PublicIdentity,
        seq: int,
        ack: int,
        patterns: tuple[str, ...],
        base: Base | None,
    ) -> tuple[ExportedBundle, Export] | None:
        """The agent's bundle (a delta when its acknowledged ``base`` allows it) and what to
        record of it as a possible base; ``None`` when it is over the size cap."""
        home, now = self.home, self.now
        content = content_on(
            self.store, conn, agent.name, now, ack, self._view_of_pass, patterns, base
        )
        if len(content.plaintext) + ENVELOPE_ALLOWANCE > self.cap:
            return None
        if self._keys is None:
            self._keys = online_keys(home)  # identity.key's, or a PKCS#11 token's
        sender, keys = self._keys
        bundle = seal_content(
            sender, keys, agent, content, seq, now, self.valid_for, self._trust_of_pass()
        )
        if len(bundle.data) > self.cap:
            return None
        return bundle, exported(bundle, content)


def _written(
    claimed: list[_Claimed],
    named: Callable[[], list[str]],
    report: PassReport,
    on_written: Callable[[dict[str, Any]], None],
) -> None:
    """Name the batch's files (``named`` gives their paths), then report each."""
    for item, path in zip(claimed, named(), strict=True):
        bundle = item.bundle
        crashpoint.reached("export.written")
        done = {
            "agent": bundle.agent,
            "path": path,
            "seq": bundle.seq,
            "secrets": bundle.secrets,
            "tombstones": bundle.tombstones,
            "base_seq": bundle.base_seq,
            "bytes": len(bundle.data),
        }
        report.written.append(done)
        on_written(done)


def _begin_all(destination: Destination, claimed: list[_Claimed]) -> Callable[[], list[str]]:
    """Begin writing the batch's files; returns what names them and gives their paths. A folder
    writes them now and syncs them on its sync thread (``begin_many``); another destination
    (SFTP, the diode) writes them one by one now."""
    items = [(c.bundle.name, c.bundle.data) for c in claimed]
    begin_many = getattr(destination, "begin_many", None)
    if begin_many is not None:
        group = begin_many(items)
        return lambda: [str(path) for path in group.finish()]
    where = [destination.put(name, data) for name, data in items]
    return lambda: where


def audit_marks(conn: Connection, agents: list[str]) -> dict[str, int]:
    """Each agent's acknowledgement mark (as :func:`outer_gateway.audit_import.contiguous_high`),
    in one query for the batch."""
    marks = dict.fromkeys(agents, 0)
    if not agents:
        return marks
    where, params = any_of(conn, "agent", agents)
    broken: set[str] = set()
    sql = f"SELECT agent, seq FROM agent_audit WHERE {where} ORDER BY agent, seq"  # noqa: S608
    for agent, seq in fetch_all(conn, sql, params):
        if agent in broken:
            continue
        if int(seq) == marks[agent] + 1:
            marks[agent] = int(seq)
        else:
            broken.add(agent)
    return marks
