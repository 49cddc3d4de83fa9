"""The rotation part of ``relay gateway run``: due rotation jobs run before each export."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from outer_gateway.store import GatewayStore
    from relay.home import Home


class ScheduledRotations:
    """Runs the store's due rotation jobs (:mod:`outer_gateway.rotation_schedule`)."""

    def __init__(self, home: Home, store: GatewayStore) -> None:
        from outer_gateway.rotation_schedule import RotationSchedule

        self.home = home
        self.store = store
        self.schedule = RotationSchedule(store)

    def run_due(self, now: int) -> list[str]:
        """Sync the jobs with the policies, then rotate what is due; errors are reported and
        retried at the next pass, never fatal to the loop."""
        from relay.errors import RelayError

        try:
            self.schedule.sync(now)
            return self.schedule.run_due(now, self._rotate)
        except RelayError as exc:
            click.echo(f"relay: error: rotation: {exc.diagnostics()}", err=True)
            return []

    def _rotate(self, pattern: str, now: int) -> None:
        from outer_gateway.rotation import rotate_due

        for done in rotate_due(self.home, self.store, pattern, now):
            click.echo(f"rotated {done.path} (version {done.version})", err=True)

    def wait(self, now: float, next_export: int) -> float:
        """Seconds from ``now`` (the clock, not the whole second) until the next export or the
        next due rotation, whichever is first, so a period starts on time; one second when
        something is due already (a failed rotation is retried then, not spun on)."""
        due = self.schedule.next_due()
        target = next_export if due is None else min(next_export, due)
        return target - now if target > now else 1.0

    def close(self) -> None:
        self.schedule.close()
