"""``relay agent get``: read one secret and append one audit record, importing little.

Both entries run this one function: the click command in :mod:`relay.cli.agent` and the
start-up fast path in :mod:`relay.entry`, so flags, errors and exit codes cannot drift apart.
Only what reading one secret and appending one audit record need is imported here: no click,
no SQLAlchemy, and the audit sinks (syslog, JSON lines) only when the home configures one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from relay.audit.record import FieldValue
from relay.home import Home

CONFIG_FILE = "relay.toml"  # relay.config.CONFIG_NAME, without importing the settings' parser
DEFAULT_CLOCK_SKEW = 300  # agent.clock_skew's default ("5m"), checked by a test


def get_value(home_path: Path, path: str, label: str = "current") -> bytes:
    """The ``label`` version (current, previous, pending) of ``path`` in the agent home at
    ``home_path``, its read audited (a denial is audited too, then raised as ``SecretError``)."""
    from inner_agent.lookup import read_secret
    from inner_agent.rawdb import raw_connection
    from relay.codes import STALE
    from relay.errors import SecretError

    home = Home.open(home_path, "agent")
    which: dict[str, FieldValue] = {} if label == "current" else {"label": label}
    with raw_connection(home) as conn:
        try:
            now = int(time.time())
            if _fails_closed(home, conn, path, now):
                raise SecretError(f"the agent is stale and {path!r} fails closed", code=STALE)
            secret = read_secret(conn, path, now, label, clock_skew(home))
        except SecretError as exc:
            denied = {"path": path, "reason": exc.code, **which, **who()}
            _record(home, conn, "secret.denied", denied)
            raise
        read = {"path": path, "version": secret.version, **which, **who()}
        _record(home, conn, "secret.read", read)
    return secret.value


def _fails_closed(home: Home, conn: Any, path: str, now: int) -> bool:
    """The local API's rule (:mod:`inner_agent.fail_closed`); settings are read only when the
    home has a settings file (without one, only the gateway's shipped rules apply)."""
    from inner_agent.fail_closed import rules_on

    fail_closed: tuple[str, ...] = ()
    max_staleness = None
    if (home.path / CONFIG_FILE).exists():
        from relay.durations import parse_duration

        staleness = str(home.config.get("agent.max_staleness"))
        max_staleness = parse_duration(staleness) if staleness else None
        fail_closed = tuple(str(p) for p in home.config.get("agent.fail_closed"))
    return rules_on(conn, fail_closed, max_staleness).fails_closed(path, now)


def clock_skew(home: Home) -> int:
    """``agent.clock_skew`` in seconds; without a settings file its default, without importing
    the settings' parser (the fast path)."""
    if not (home.path / CONFIG_FILE).exists():
        return DEFAULT_CLOCK_SKEW
    from relay.durations import parse_duration

    return parse_duration(str(home.config.get("agent.clock_skew")))


def who() -> dict[str, str | int]:
    """Who asked, for the audit record: the local user of this CLI process."""
    import pwd

    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    return {"user": user, "uid": uid, "via": "cli"}


def _record(home: Home, conn: Any, event_type: str, fields: dict[str, FieldValue]) -> None:
    """``AgentAudit.record_on``: append in a write transaction, then feed the sinks; the sink
    stack is imported only when a sink is configured (its delivery is then the same code)."""
    from inner_agent.rawdb import executor, immediate
    from relay.audit import log

    execute = executor(conn)
    with immediate(conn):
        log.append(execute, event_type, fields)
    if _has_sinks(home):
        from inner_agent.audit import AgentAudit

        AgentAudit(home)._deliver(execute)


def _has_sinks(home: Home) -> bool:
    """Whether the home's settings name an audit sink (none without a settings file)."""
    if not (home.path / CONFIG_FILE).exists():
        return False
    config = home.config
    named = [str(config.get(key)) for key in ("audit.jsonl", "audit.syslog", "audit.syslog_format")]
    return bool(named[0] or named[1])
