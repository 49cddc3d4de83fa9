"""Which stored version each label means at a given time: pure, judged with the agent's clock.

A ``pending`` version whose ``activates_at`` has come *is* ``current`` from that second on, even
before the store switched its rows (the switch, its audit record and the hooks follow within
moments): so every reader (``relay agent get``, the API) serves the successor on time without a
new bundle, and a successor that arrives after its activation time is current at once.
"""

from __future__ import annotations

from dataclasses import dataclass

CURRENT = "current"
PREVIOUS = "previous"
PENDING = "pending"
LABELS = (CURRENT, PREVIOUS, PENDING)


@dataclass(frozen=True)
class StoredVersion:
    """One stored row: the current one (``at``/``overlap`` unused), previous or pending."""

    label: str
    value: bytes
    version: int
    expires_at: int | None
    at: int | None = None  # previous: end of overlap; pending: activates_at
    overlap: int | None = None  # pending: how long the replaced version stays previous

    def __repr__(self) -> str:
        return f"StoredVersion({self.label}, version={self.version}, value=<hidden>)"


@dataclass(frozen=True)
class Resolved:
    """What each label means now, and when that changes next (a pending activation)."""

    by_label: dict[str, StoredVersion]
    switch_at: int | None


def resolve(rows: list[StoredVersion], now: int, skew: int = 0) -> Resolved:
    """The effective current, previous and pending versions of one path at ``now``.

    ``activates_at`` is judged with ``skew`` seconds of leeway (``agent.clock_skew``), as a
    certificate's ``not_before`` is: a pending version is current once ``now + skew >=
    activates_at``, so a clock up to ``skew`` behind the gateway's still switches on time."""
    stored = {row.label: row for row in rows}
    current, previous, pending = stored.get(CURRENT), stored.get(PREVIOUS), stored.get(PENDING)
    out: dict[str, StoredVersion] = {}
    if pending is not None and pending.at is not None and now + skew >= pending.at:
        out[CURRENT] = pending
        if current is not None and (pending.overlap is None or now < pending.at + pending.overlap):
            out[PREVIOUS] = current
        return Resolved(out, None)
    if current is not None:
        out[CURRENT] = current
    if previous is not None and (previous.at is None or now < previous.at):
        out[PREVIOUS] = previous
    if pending is not None:
        out[PENDING] = pending
    switch_at = None if pending is None or pending.at is None else pending.at - skew
    return Resolved(out, switch_at)


def check_label(label: str) -> str:
    """``label`` if it is one of :data:`LABELS`; ``ValueError`` otherwise."""
    if label not in LABELS:
        raise ValueError(f"unknown version label {label!r}")
    return label
