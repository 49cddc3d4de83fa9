"""Short-lived API access tokens, kept in memory only.

A token is 256 random bits, handed out once; the table is keyed by its SHA-256, so looking one up
never compares the token itself and a memory dump of the table yields no usable token. Tokens die
with the process, expire after ``api.token_ttl`` and the table is bounded.
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


@dataclass(frozen=True)
class Grant:
    """What a live token stands for."""

    app: str
    expires: float  # on the monotonic clock


class TokenTable:
    """Issue and resolve bearer tokens."""

    def __init__(
        self, ttl: int, clock: Callable[[], float] = time.monotonic, limit: int = MAX_TOKENS
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self.limit = limit
        self._grants: dict[bytes, Grant] = {}
        self._lock = threading.Lock()

    def issue(self, app: str) -> str:
        """A new token for ``app``, valid for ``ttl`` seconds."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            if len(self._grants) >= self.limit:
                self._prune_locked()
            if len(self._grants) >= self.limit:  # still full of live tokens: drop the oldest
                del self._grants[next(iter(self._grants))]
            self._grants[_digest(token)] = Grant(app, self.clock() + self.ttl)
        return token

    def resolve(self, token: str) -> str | None:
        """The app of a live token, or ``None`` (unknown or expired)."""
        grant = self._grants.get(_digest(token))
        if grant is None or grant.expires <= self.clock():
            return None
        return grant.app

    def revoke_app(self, app: str) -> None:
        """Forget every token of ``app``."""
        with self._lock:
            for key in [k for k, g in self._grants.items() if g.app == app]:
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


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
