"""Token table and failed-authentication throttle (pure, with an injected clock)."""

from __future__ import annotations

from inner_agent.tokens import FailureThrottle, TokenTable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_app_in_a_loop_cannot_evict_another_apps_tokens() -> None:
    table = TokenTable(ttl=900, clock=Clock(), limit=100, per_app=5)
    kept = table.issue("billing")
    first = [table.issue("noisy") for _ in range(5)]
    for _ in range(500):
        table.issue("noisy")
    assert table.resolve(kept) == "billing"
    assert all(table.resolve(t) is None for t in first)  # the noisy app's oldest went first


def test_tokens_expire() -> None:
    clock = Clock()
    table = TokenTable(ttl=10, clock=clock)
    token = table.issue("app")
    clock.now += 9
    assert table.resolve(token) == "app"
    clock.now += 2
    assert table.resolve(token) is None


def test_throttle_blocks_after_the_limit_and_forgives_after_the_window() -> None:
    clock = Clock()
    throttle = FailureThrottle(clock=clock, window=60, limit=3)
    for _ in range(3):
        assert not throttle.blocked("app-x")
        throttle.failed("app-x")
    assert throttle.blocked("app-x")
    assert not throttle.blocked("app-y")
    clock.now += 61
    assert not throttle.blocked("app-x")
