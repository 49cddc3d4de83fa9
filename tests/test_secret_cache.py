"""The agent's in-memory cache of decrypted values, on an injected clock: ``inner_agent.cache``."""

from __future__ import annotations

from inner_agent.cache import SecretCache
from inner_agent.lookup import Secret


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def secret(path: str, expires_at: int | None = None, switch_at: int | None = None) -> Secret:
    return Secret(path, b"v", 1, expires_at, switch_at)


def test_an_entry_lives_max_age_seconds() -> None:
    clock = Clock()
    cache = SecretCache(max_age=60, clock=clock)
    cache.put(secret("a"), cache.generation)
    clock.now += 59.9
    assert cache.get("a") == secret("a")
    clock.now += 0.1
    assert cache.get("a") is None
    assert len(cache) == 0  # dropped, not only hidden


def test_an_entry_never_outlives_its_expiry_or_its_switch_to_a_pending_version() -> None:
    clock = Clock()
    cache = SecretCache(max_age=60, clock=clock)
    cache.put(secret("exp", expires_at=1010), cache.generation)
    cache.put(secret("switch", switch_at=1020), cache.generation)
    clock.now = 1010
    assert cache.get("exp") is None
    assert cache.get("switch") is not None
    clock.now = 1020
    assert cache.get("switch") is None


def test_an_import_empties_the_cache_and_refuses_values_read_before_it() -> None:
    cache = SecretCache(clock=Clock())
    before = cache.generation
    cache.put(secret("a"), before)
    cache.invalidate()
    assert cache.get("a") is None
    cache.put(secret("b"), before)  # read under the old generation: not kept
    assert cache.get("b") is None
    cache.put(secret("b"), cache.generation)
    assert cache.get("b") is not None


def test_the_least_recently_used_entry_goes_first() -> None:
    cache = SecretCache(max_entries=2, clock=Clock())
    cache.put(secret("a"), 0)
    cache.put(secret("b"), 0)
    assert cache.get("a") is not None  # a is now the most recent
    cache.put(secret("c"), 0)
    assert cache.get("b") is None
    assert cache.get("a") is not None
    assert cache.get("c") is not None
    assert len(cache) == 2
