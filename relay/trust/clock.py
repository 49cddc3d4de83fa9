"""Judging time on an isolated host: the clock, the persisted time floor and the leeway.

Pure. The **time floor** is the newest signed ``created`` time the agent has accepted: a bundle
proves that its gateway's clock had reached that time, so the agent never judges a time earlier
than it (a clock set back cannot resurrect expired bundles or certificates, and a host that
boots at 1970 still judges sensibly). The clock is reported **behind** when it is earlier than
the floor by more than the leeway, and **far ahead** when it is past the floor by more than
``ahead_limit`` (a host whose clock jumped years ahead sees every bundle expired).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TimeJudgement:
    """What time the agent judges against, and what it thinks of its clock."""

    now: int  # max(clock, floor): the time used for expiry and certificate validity
    clock: int
    floor: int | None
    behind: bool
    ahead: bool

    @property
    def seconds_behind(self) -> int:
        return max(0, (self.floor or 0) - self.clock)

    def fields(self) -> dict[str, int | None]:
        """Audit and health fields (times in Unix seconds)."""
        return {"clock": self.clock, "time_floor": self.floor}


def judge_time(clock: int, floor: int | None, skew: int, ahead_limit: int) -> TimeJudgement:
    """The judged time and the clock's state, given the raw ``clock`` and the ``floor``."""
    if floor is None:
        return TimeJudgement(clock, clock, None, False, False)
    return TimeJudgement(
        now=max(clock, floor),
        clock=clock,
        floor=floor,
        behind=clock < floor - skew,
        ahead=clock > floor + ahead_limit,
    )


class ClockAlarm:
    """Which audit record a judgement calls for: ``clock.behind`` or ``clock.ahead`` when the
    clock enters that state, nothing while it stays there or is fine (one per change of state,
    for the life of this object)."""

    def __init__(self) -> None:
        self._state = (False, False)

    def event(self, judged: TimeJudgement) -> str | None:
        state = (judged.behind, judged.ahead)
        changed, self._state = state != self._state, state
        if not changed:
            return None
        return "clock.behind" if judged.behind else "clock.ahead" if judged.ahead else None
