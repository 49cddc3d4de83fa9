"""Short-lived API access tokens, kept in memory only.

A token is 256 random bits, handed out once; the table is keyed by its SHA-256, so looking one up
never compares the token itself and a memory dump of the table yields no usable token. Tokens die
with the process, expire after ``api.token_ttl`` and the table is bounded.

A token stands for one app *registration* (its ``client_id``, random and never reused), not for
the app's name: after ``app rm`` and ``app add`` with the same name, the old tokens resolve to a
registration that no longer exists.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

TOKEN_PREFIX = "rt_"  # noqa: S105 - a prefix, not a secret
MAX_TOKENS = 10_000
MAX_TOKENS_PER_APP = 64  # one app asking in a loop must not evict the others' tokens
FAILURE_WINDOW = 60.0
MAX_FAILURES = 10  # failed client authentications per client id and window, then 429


@dataclass(frozen=True)
class Grant:
    """What a live token stands for."""

    registration: str  # the app's client_id
    expires: float  # on the monotonic clock


class TokenTable:
    """Issue and resolve bearer tokens."""

    def __init__(
        self,
        ttl: int,
        clock: Callable[[], float] = time.monotonic,
        limit: int = MAX_TOKENS,
        per_app: int = MAX_TOKENS_PER_APP,
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self.limit = limit
        self.per_app = per_app
        self._grants: dict[bytes, Grant] = {}
        self._lock = threading.Lock()

    def issue(self, registration: str) -> str:
        """A new token for the app registered as ``registration``, valid for ``ttl`` seconds."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            mine = [k for k, g in self._grants.items() if g.registration == registration]
            if len(mine) >= self.per_app:  # the app's oldest token makes room for its newest
                del self._grants[mine[0]]
            if len(self._grants) >= self.limit:
                self._prune_locked()
            if len(self._grants) >= self.limit:  # still full of live tokens: drop the oldest
                del self._grants[next(iter(self._grants))]
            self._grants[_digest(token)] = Grant(registration, self.clock() + self.ttl)
        return token

    def resolve(self, token: str) -> str | None:
        """The registration (client_id) of a live token, or ``None`` (unknown or expired)."""
        grant = self._grants.get(_digest(token))
        if grant is None or grant.expires <= self.clock():
            return None
        return grant.registration

    def revoke(self, registration: str) -> None:
        """Forget every token of ``registration``."""
        with self._lock:
            for key in [k for k, g in self._grants.items() if g.registration == registration]:
                del self._grants[key]

    def prune(self) -> int:
        """Drop expired tokens; returns how many are left."""
        with self._lock:
            self._prune_locked()
            return len(self._grants)

    def _prune_locked(self) -> None:
        now = self.clock()
        for key in [k for k, g in self._grants.items() if g.expires <= now]:
            del self._grants[key]


class FailureThrottle:
    """Count failed authentications per client id; past the limit in a window, further
    *failures* are answered 429 without an audit record each.

    Only failures are throttled: the service always checks the credentials first, so the right
    secret is never refused, however many wrong ones came before (a local process flooding wrong
    secrets for a known client id cannot lock the application out). Client secrets are 256
    random bits, so guessing is hopeless; this bounds the audit records a flood can cause. Keys
    are truncated client ids, and the table is bounded like the token table."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        window: float = FAILURE_WINDOW,
        limit: int = MAX_FAILURES,
    ) -> None:
        self.clock = clock
        self.window = window
        self.limit = limit
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, client_id: str) -> bool:
        """Whether ``client_id`` has used up its failures in the current window."""
        with self._lock:
            return len(self._recent_locked(client_id[:64])) >= self.limit

    def failed(self, client_id: str) -> None:
        """Count one failed authentication of ``client_id``."""
        key = client_id[:64]
        with self._lock:
            if len(self._failures) >= MAX_TOKENS and key not in self._failures:
                self._failures.pop(next(iter(self._failures)))
            self._failures[key] = [*self._recent_locked(key), self.clock()]

    def _recent_locked(self, key: str) -> list[float]:
        since = self.clock() - self.window
        return [t for t in self._failures.get(key, []) if t > since]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
