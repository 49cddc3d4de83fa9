"""``relay gateway audit verify``: is the audit complete, not only unaltered?

For each agent: its received chain is intact and has no gap up to the newest head it announced;
it has not been silent (no audit bundle imported) for longer than ``audit.max_silence``; and its
head never went backwards (a bundle with a higher ``seq`` than another announcing a lower head
means records were removed from the agent's log, or the agent was restored from a backup). And
the gateway's own chain is intact.

The judgements are pure functions over rows and a clock reading; :func:`verify_agents` and
:func:`verify_own` read the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from outer_gateway.audit import GatewayAudit
from outer_gateway.store import GatewayStore
from relay.audit.chain import ChainReport, verify_chain
from relay.db import sa_executor


@dataclass(frozen=True)
class HeadBackwards:
    """Bundle ``seq`` announced head ``head``, below the ``earlier_head`` of bundle
    ``earlier_seq`` that the agent wrote before it."""

    seq: int
    head: int
    earlier_seq: int
    earlier_head: int


@dataclass(frozen=True)
class AgentChain:
    """The verdict on one agent's audit as held by the gateway."""

    agent: str
    report: ChainReport
    expected_high: int
    last_heard: int
    silent_for: int | None  # seconds past audit.max_silence's limit: None while it is heard
    backwards: tuple[HeadBackwards, ...] = ()

    @property
    def missing(self) -> list[tuple[int, int]]:
        """Missing seq ranges, including a tail the agent announced but never delivered."""
        gaps = list(self.report.gaps)
        if self.expected_high > self.report.high:
            gaps.append((self.report.high + 1, self.expected_high))
        return gaps

    @property
    def ok(self) -> bool:
        """Intact, complete, heard from recently, head never backwards."""
        return (
            not self.missing
            and not self.report.breaks
            and self.silent_for is None
            and not self.backwards
        )


def heads_going_backwards(heads: Iterable[tuple[int, int]]) -> list[HeadBackwards]:
    """Each ``(bundle seq, head seq)`` whose head is below the highest head of a bundle with a
    lower seq (pure; input in any order)."""
    found: list[HeadBackwards] = []
    best: tuple[int, int] | None = None  # (seq, head) with the highest head so far
    for seq, head in sorted(heads):
        if best is not None and head < best[1]:
            found.append(HeadBackwards(seq, head, best[0], best[1]))
        if best is None or head > best[1]:
            best = (seq, head)
    return found


def silence(last_heard: int, now: int, max_silence: int) -> int | None:
    """How long the agent has been silent, if that is longer than ``max_silence`` seconds."""
    quiet = now - last_heard
    return quiet if quiet > max_silence else None


def verify_agents(
    audit: GatewayAudit, store: GatewayStore, agents: list[str], now: int, max_silence: int
) -> list[AgentChain]:
    """Verify each named agent's received audit (see the module docstring)."""
    enrolled = {a.identity.name: a.enrolled_at for a in store.agents()}
    chains = []
    for agent in agents:
        records = [r for _, r in audit.received(agent)]
        with audit.engine.connect() as conn:
            rows = sa_executor(conn)(
                "SELECT seq, head_seq, imported_at FROM audit_bundles WHERE agent = ?", (agent,)
            )
        heads = [(int(seq), int(head)) for seq, head, _ in rows]
        last_heard = max([int(at) for _, _, at in rows], default=enrolled[agent])
        chains.append(
            AgentChain(
                agent,
                verify_chain(records),
                max((head for _, head in heads), default=0),
                last_heard,
                silence(last_heard, now, max_silence),
                tuple(heads_going_backwards(heads)),
            )
        )
    return chains


def verify_own(audit: GatewayAudit) -> ChainReport:
    """The gateway's own chain: every record from 1, intact and linked."""
    return verify_chain(audit.own_records())
