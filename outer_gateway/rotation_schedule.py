"""Scheduled rotation: one APScheduler job per policy with ``rotate_every``, kept in the
gateway's own database (APScheduler's ``SQLAlchemyJobStore`` on the store's engine: SQLCipher,
or PostgreSQL when ``gateway.store_url`` is set), so the schedule survives restarts and several
gateway processes share one.

The jobs are driven by ``relay gateway run`` on its clock, through :meth:`RotationSchedule.
run_due`, instead of a scheduler thread: the run loop decides when to look (the earlier of the
next export and the next due job), and tests trigger due jobs with an injected ``now`` instead of
sleeping. A job that was missed while the gateway was down runs once (coalesced).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from outer_gateway.policies import Policy, list_policies
from outer_gateway.store import GatewayStore

JOB_FUNC = "outer_gateway.rotation_schedule:scheduled_rotation"
TABLE = "rotation_jobs"


def _at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class RotationSchedule:
    """The rotation jobs of one gateway store."""

    def __init__(self, store: GatewayStore) -> None:
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        self._scheduler = BackgroundScheduler(timezone=UTC)  # never started: only a context
        self.jobs = SQLAlchemyJobStore(engine=store.engine, tablename=TABLE)
        self.jobs.start(self._scheduler, "default")
        self.store = store

    def sync(self, now: int) -> None:
        """One job per policy with ``rotate_every``: add new ones (first run one period from
        now), re-time changed ones, remove those whose policy is gone."""
        wanted = {_job_id(p): p for p in list_policies(self.store) if p.rotate_every}
        held = {job.id: job for job in self.jobs.get_all_jobs()}
        for job_id in held.keys() - wanted.keys():
            self.jobs.remove_job(job_id)
        for job_id, policy in wanted.items():
            job = held.get(job_id)
            if job is not None and job.trigger.interval.total_seconds() == policy.rotate_every:
                continue
            if job is not None:
                self.jobs.remove_job(job_id)
            self.jobs.add_job(self._new_job(policy, now))

    def _new_job(self, policy: Policy, now: int) -> Any:
        from apscheduler.job import Job
        from apscheduler.triggers.interval import IntervalTrigger

        assert policy.rotate_every is not None  # noqa: S101 - filtered by sync
        trigger = IntervalTrigger(
            seconds=policy.rotate_every, start_date=_at(now + policy.rotate_every), timezone=UTC
        )
        return Job(
            self._scheduler,
            id=_job_id(policy),
            func=JOB_FUNC,
            args=(policy.pattern,),
            kwargs={},
            trigger=trigger,
            executor="default",
            name=f"rotate {policy.pattern}",
            misfire_grace_time=None,
            coalesce=True,
            max_instances=1,
            next_run_time=trigger.get_next_fire_time(None, _at(now)),
        )

    def next_due(self) -> int | None:
        """When the next job is due (epoch seconds), if any."""
        when = self.jobs.get_next_run_time()
        return None if when is None else int(when.timestamp())

    def run_due(self, now: int, rotate: Callable[[str, int], object]) -> list[str]:
        """Run every job due at ``now`` once (``rotate(pattern, now)``) and move it to its next
        fire time after ``now``; returns the patterns run."""
        ran = []
        for job in self.jobs.get_due_jobs(_at(now)):
            (pattern,) = job.args
            rotate(pattern, now)
            ran.append(pattern)
            following = job.trigger.get_next_fire_time(job.next_run_time, _at(now))
            while following is not None and following <= _at(now):  # coalesce missed runs
                following = job.trigger.get_next_fire_time(following, _at(now))
            job._modify(next_run_time=following)
            self.jobs.update_job(job)
        return ran

    def close(self) -> None:
        self.jobs.shutdown()


def scheduled_rotation(pattern: str) -> None:
    """The job's callable as APScheduler records it; the run loop runs it with its home and
    store through :meth:`RotationSchedule.run_due` (see the module docstring)."""
    raise RuntimeError(f"rotation jobs ({pattern}) run through RotationSchedule.run_due")


def _job_id(policy: Policy) -> str:
    return f"rotate:{policy.pattern}"
