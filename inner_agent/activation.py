"""Pending versions becoming current on the agent's clock, with no new bundle.

Readers already serve a due successor (:mod:`inner_agent.labels`); this switches the stored rows,
records ``secret.activated`` (audit) and so tells the change hooks, which subscribe to events
(:func:`inner_agent.events.subscribe`). ``relay agent run`` calls :meth:`ActivationJob.run`
every second; an import activates what its bundle made due in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from inner_agent import events
from inner_agent.store import AgentStore, ApplyResult
from inner_agent.versions import Activation
from relay.home import Home


def activation_fields(result: ApplyResult | None) -> Iterator[dict[str, str | int | None]]:
    """The audit fields of each activation an applied bundle made."""
    for activation in result.activated if result is not None else ():
        yield _fields(activation)


def _fields(activation: Activation) -> dict[str, str | int | None]:
    return {
        "path": activation.path,
        "version": activation.version,
        "replaced": activation.replaced,
        "activates_at": activation.activates_at,
    }


def switch_due(store: AgentStore, now: int, record: Callable[..., object]) -> list[Activation]:
    """Switch every due pending version now and ``record`` each switch (``secret.activated``)."""
    done = store.activate_due(now)
    for activation in done:
        record("secret.activated", **_fields(activation))
    return done


def switch_due_in(home: Home, now: int, record: Callable[..., object]) -> list[Activation]:
    """:func:`switch_due` on the store of ``home`` (``relay agent audit export`` runs it, so a
    switch made while no ``relay agent run`` was running is reported in that export)."""
    store = AgentStore.open(home)
    try:
        return switch_due(store, now, record)
    finally:
        store.close()


class ActivationJob:
    """Switch due pending versions in the store and record each switch."""

    def __init__(
        self, store: AgentStore, clock: Callable[[], float], changed: Callable[[], None]
    ) -> None:
        self.store = store
        self.clock = clock
        self.changed = changed

    def run(self) -> list[Activation]:
        """One pass; ``changed`` is called (drop cached values) when anything switched."""
        done = self.store.activate_due(int(self.clock()))
        for activation in done:
            events.record("secret.activated", **_fields(activation))
        if done:
            self.changed()
        return done
