"""Capped exponential backoff with full jitter, for connecting to a remote that may be down.

Attempt ``n`` (counting from 0) that fails with a retryable error is followed by a sleep drawn
uniformly from ``[0, min(cap, base * 2**n)]`` ("full jitter"): many clients that lost the same
server spread their retries instead of hammering it in step, and the number of attempts is fixed,
so a dead server costs a bounded time. Sleep and randomness are injectable for tests.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from relay.codes import BAD_VALUE
from relay.errors import UsageError

T = TypeVar("T")

_SYSTEM_RANDOM = random.SystemRandom()


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a failed connection."""

    attempts: int = 4
    base: float = 0.5
    cap: float = 8.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    uniform: Callable[[float, float], float] = field(default=_SYSTEM_RANDOM.uniform, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base < 0 or self.cap < 0:
            raise ValueError("attempts must be >= 1 and delays >= 0")

    def delay(self, failed_attempt: int) -> float:
        """The pause after attempt ``failed_attempt`` (0-based) failed."""
        ceiling = min(self.cap, self.base * (2**failed_attempt))
        return self.uniform(0.0, ceiling)

    @classmethod
    def from_extra(cls, extra: Mapping[str, str], **overrides: object) -> RetryPolicy:
        """Read ``connect_attempts``, ``retry_base`` and ``retry_cap`` (seconds) from ``extra``."""
        fields: dict[str, object] = {}
        if "connect_attempts" in extra:
            fields["attempts"] = _number(extra, "connect_attempts", int)
        if "retry_base" in extra:
            fields["base"] = _number(extra, "retry_base", float)
        if "retry_cap" in extra:
            fields["cap"] = _number(extra, "retry_cap", float)
        fields.update(overrides)
        try:
            return cls(**fields)  # type: ignore[arg-type]
        except ValueError as exc:
            raise UsageError(f"bad retry settings: {exc}", code=BAD_VALUE) from None


def _number(extra: Mapping[str, str], key: str, kind: Callable[[str], float]) -> float:
    try:
        return kind(extra[key])
    except ValueError:
        raise UsageError(f"{key}={extra[key]!r} is not a number", code=BAD_VALUE) from None


def call_with_retry(
    attempt: Callable[[], T],
    policy: RetryPolicy,
    retryable: Callable[[BaseException], bool],
) -> T:
    """Run ``attempt`` until it succeeds, fails with a non-retryable error, or attempts run out.

    The last retryable error is re-raised as is; the caller turns it into a one-line message.
    """
    for number in range(policy.attempts):
        try:
            return attempt()
        except Exception as exc:
            if not retryable(exc) or number + 1 >= policy.attempts:
                raise
            policy.sleep(policy.delay(number))
    raise AssertionError("unreachable")  # pragma: no cover
