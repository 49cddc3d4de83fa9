"""Schema steps of the hop store, applied by :mod:`relay.store_version` (none yet: version 1 is
the store of relay 0.1.0). Add a :class:`~relay.store_version.Step` here with every change to
:mod:`relay.hop.store`'s tables, as for the agent (:mod:`inner_agent.migrations`)."""

from __future__ import annotations

from relay.store_version import Step, latest

STEPS: tuple[Step, ...] = ()

CURRENT = latest(STEPS)
