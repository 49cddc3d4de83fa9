"""A small in-memory cache of decrypted secret values.

Each entry lives at most ``max_age`` seconds and never past its secret's expiry. Every import
bumps a generation and empties the cache; a reader that fetched a value under an older generation
does not store it (so a value read just before an import can never outlive that import).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from inner_agent.lookup import Secret

MAX_ENTRIES = 4096
MAX_AGE = 60.0


class SecretCache:
    """Path → (secret, valid-until on the wall clock), LRU-bounded."""

    def __init__(
        self,
        max_entries: int = MAX_ENTRIES,
        max_age: float = MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_entries = max_entries
        self.max_age = max_age
        self.clock = clock
        self.generation = 0
        self._entries: OrderedDict[str, tuple[Secret, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str) -> Secret | None:
        """The cached secret of ``path`` if still valid."""
        with self._lock:
            entry = self._entries.get(path)
            if entry is None:
                return None
            if entry[1] <= self.clock():
                del self._entries[path]
                return None
            self._entries.move_to_end(path)
            return entry[0]

    def put(self, secret: Secret, generation: int) -> None:
        """Keep ``secret`` if no import happened since ``generation`` was read."""
        until = self.clock() + self.max_age
        if secret.expires_at is not None:
            until = min(until, float(secret.expires_at))
        if secret.switch_at is not None:  # a pending successor becomes current then
            until = min(until, float(secret.switch_at))
        with self._lock:
            if generation != self.generation:
                return
            self._entries[secret.path] = (secret, until)
            self._entries.move_to_end(secret.path)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def invalidate(self) -> None:
        """Forget everything (an import happened)."""
        with self._lock:
            self.generation += 1
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
