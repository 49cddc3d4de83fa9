"""Where exec, render and hooks get secrets: the agent store or a running agent's API.

Both sources answer the same two questions: the values of a set of paths (all of them, or the
first refusal as a :class:`~relay.errors.SecretError` carrying its reason code), and the current
versions of a set of paths (for change detection; no value is read). The store source applies the
same refusals as the API: ``not_found`` (not granted to this agent), ``expired``, and ``stale``
for a path that fails closed (:mod:`inner_agent.fail_closed`). Every read and
every refusal is audited (path, version, reason; never a value).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from inner_agent.fail_closed import rules_on
from inner_agent.lookup import Secret, read_secret
from relay.codes import UNREACHABLE
from relay.durations import parse_duration
from relay.errors import SecretError
from relay.home import Home
from relay.paths import check_path

STALE = "stale"
FORBIDDEN = "forbidden"

# audit(conn, event_type, fields): conn is the raw store connection the read used.
Auditor = Callable[[Any, str, dict[str, Any]], None]


class SecretSource(Protocol):
    """Values and versions of secret paths."""

    def read_all(self, paths: Iterable[str]) -> dict[str, Secret]:
        """Every path's secret, or ``SecretError`` for the first one refused."""
        ...

    def versions(self, paths: Iterable[str]) -> dict[str, int | None]:
        """The current version of each path (``None`` when absent); no value is read."""
        ...


def cli_auditor(home: Home, via: str) -> Auditor:
    """Audit records written straight into the chain, as ``relay agent get`` does."""
    from inner_agent.audit import AgentAudit

    audit = AgentAudit(home)
    who = _who(via)

    def record(conn: Any, event_type: str, fields: dict[str, Any]) -> None:
        audit.record_on(conn, event_type, {**fields, **who})

    return record


class StoreSource:
    """Secrets read from an agent home's store with the raw driver (fast, no SQLAlchemy)."""

    def __init__(self, home: Home, audit: Auditor, clock: Callable[[], float] = time.time) -> None:
        self.home = home
        self.audit = audit
        self.clock = clock
        staleness = str(home.config.get("agent.max_staleness"))
        self.max_staleness = parse_duration(staleness) if staleness else None
        self.fail_closed = [str(p) for p in home.config.get("agent.fail_closed")]
        self.skew = parse_duration(str(home.config.get("agent.clock_skew")))

    def read_all(self, paths: Iterable[str]) -> dict[str, Secret]:
        from inner_agent.rawdb import raw_connection

        wanted = [check_path(p) for p in dict.fromkeys(paths)]
        found: dict[str, Secret] = {}
        with raw_connection(self.home) as conn:
            now = int(self.clock())
            rules = rules_on(conn, tuple(self.fail_closed), self.max_staleness)
            for path in wanted:
                try:
                    if rules.fails_closed(path, now):
                        raise SecretError(
                            f"the agent is stale and {path!r} fails closed", code=STALE
                        )
                    secret = read_secret(conn, path, now, skew=self.skew)
                except SecretError as exc:
                    self.audit(conn, "secret.denied", {"path": path, "reason": exc.code})
                    raise
                self.audit(conn, "secret.read", {"path": path, "version": secret.version})
                found[path] = secret
        return found

    def versions(self, paths: Iterable[str]) -> dict[str, int | None]:
        from inner_agent.rawdb import raw_connection

        wanted = list(dict.fromkeys(paths))
        with raw_connection(self.home) as conn:
            return {path: _version(conn, path) for path in wanted}


class ApiSource:
    """Secrets read from a running agent's API with :class:`relay.client.Client` (the agent
    audits the reads)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def read_all(self, paths: Iterable[str]) -> dict[str, Secret]:
        from relay.client import ApiError

        found: dict[str, Secret] = {}
        for path in dict.fromkeys(paths):
            check_path(path)
            try:
                got = self.client.get(path)
            except ApiError as exc:
                raise SecretError(f"{path!r}: {exc.message}", code=exc.code) from None
            found[path] = Secret(path, got.value_bytes, got.version, got.expires_at)
        return found

    def versions(self, paths: Iterable[str]) -> dict[str, int | None]:
        from relay.client import ApiError

        current: dict[str, int | None] = {}
        for path in dict.fromkeys(paths):
            try:
                current[path] = self.client.get(path).version
            except ApiError as exc:
                if exc.code == UNREACHABLE:
                    raise SecretError(exc.message, code=exc.code) from None
                current[path] = None
        return current


def _version(conn: Any, path: str) -> int | None:
    row = conn.execute("SELECT version FROM secrets WHERE path = ?", (path,)).fetchone()
    return None if row is None else int(row[0])


def _who(via: str) -> dict[str, Any]:
    import os
    import pwd

    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    return {"user": user, "uid": uid, "via": via}
