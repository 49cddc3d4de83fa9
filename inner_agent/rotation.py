"""Rotation on the isolated side: requests to the gateway, and local rotation with escrow.

``relay agent rotate PATH``:

- with a matching ``[[rotation.executor]]``: a new value is generated and kept as a
  **candidate** in the store (committed) *before* the executor runs; on success one transaction
  makes it current (the old value stays ``previous``), queues its **escrow** to the gateway and
  records ``rotation.applied``; on failure or timeout the candidate is dropped, the old value stays
  current and ``rotation.failed`` is recorded. Killed in between, the agent finds the candidate
  at the next ``rotate``/``run`` and asks the executor whether the candidate works
  (:func:`recover`): yes → completed as above (``recovered``); no → dropped (``abandoned``);
  cannot tell → kept and reported (``rotation.unresolved``) until an operator decides.
- without one: a **request** is queued for the gateway (once per path until answered).

A local version stays current until a forward bundle carries a version at least as new (the
gateway's record of the escrow): an older full-state bundle never reverts it
(:func:`reassert_local`, inside the bundle's transaction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inner_agent.executors import Executor, ExecutorConfig, ExecutorFailed, find_executor
from inner_agent.rawdb import executor, immediate, raw_connection
from inner_agent.rotation_outbox import add_item
from relay import crashpoint
from relay.audit import log
from relay.audit.record import FieldValue
from relay.codes import NOT_FOUND, ROTATION_IN_PROGRESS, ROTATION_TIMEOUT
from relay.errors import RelayError, SecretError, UsageError
from relay.generate import generate
from relay.home import Home

LOCAL_OVERLAP = 3600


@dataclass(frozen=True)
class LocalResult:
    """What a local rotation (or a recovery) did."""

    path: str
    status: str  # applied | failed | timeout | recovered | abandoned | unresolved
    version: int | None
    detail: str = ""


def request_rotation(home: Home, path: str, reason: str, now: int) -> str | None:
    """Queue a rotation request for the gateway; ``None`` if one is already outstanding."""
    with raw_connection(home) as conn:
        execute = executor(conn)
        with immediate(conn):
            current = _current(execute, path)
            if current is None:
                raise SecretError(f"no secret {path!r} on this agent", code=NOT_FOUND)
            if _state(execute, path) is not None:
                return None
            item = add_item(
                execute,
                "rotation.requested",
                {"path": path, "version": current[0], "reason": reason},
                {"kind": "request", "path": path, "reason": reason},
                now,
            )
            execute(
                "INSERT INTO rotation_state (path, state, base, request_id, updated_at) "
                "VALUES (?, 'requested', ?, ?, ?)",
                (path, current[0], item.id, now),
            )
    _deliver(home)
    return item.id


def request_expiring(home: Home, now: int) -> list[str]:
    """Request rotation of every secret inside ``rotation.expiry_window`` (or expired)."""
    from relay.durations import parse_duration

    window = str(home.config.get("rotation.expiry_window"))
    if not window:
        return []
    horizon = now + parse_duration(window)
    with raw_connection(home) as conn:
        rows = conn.execute(
            "SELECT path FROM secrets WHERE expires_at IS NOT NULL AND expires_at < ? "
            "AND path NOT IN (SELECT path FROM rotation_state) ORDER BY path",
            (horizon,),
        ).fetchall()
    return [p for (p,) in rows if request_rotation(home, p, "expiry", now) is not None]


def note_applied(home: Home, now: int) -> list[str]:
    """After an import: a request is answered once a newer version is current (the import or
    activation that made it current queued its ``applied``/``activated`` outcome). Returns the
    paths whose requests were answered."""
    answered = []
    with raw_connection(home) as conn:
        execute = executor(conn)
        with immediate(conn):
            rows = execute(
                "SELECT r.path, r.base, s.version FROM rotation_state r "
                "JOIN secrets s ON s.path = r.path WHERE r.state = 'requested'",
                (),
            )
            for path, base, held in rows:
                if held > base:
                    log.append(execute, "rotation.answered", {"path": path, "version": held})
                    answered.append(path)
                    execute("DELETE FROM rotation_state WHERE path = ?", (path,))
    if answered:
        _deliver(home)
    return answered


def rotate_locally(home: Home, path: str, now: int) -> LocalResult | None:
    """Rotate ``path`` through its executor; ``None`` if no executor matches it."""
    found = find_executor(home.config.get("rotation.executor"), path)
    if found is None:
        return None
    config, runner = found
    value = generate(config.length, config.charset)
    base = _stage_candidate(home, path, runner.kind, value, now)
    try:
        runner.apply(value)
    except ExecutorFailed as exc:
        return _fail(home, path, base, exc, now)
    crashpoint.reached("rotation.executed")  # the device took the value; not committed yet
    version = _commit(home, path, value, now, "applied", f"{runner.kind} executor ok")
    return LocalResult(path, "applied", version)


def recover(home: Home, now: int) -> list[LocalResult]:
    """Resolve candidates left by a rotation that was killed mid-way (see the module doc)."""
    with raw_connection(home) as conn:
        rows = conn.execute(
            "SELECT path, value FROM rotation_state WHERE state = 'candidate' ORDER BY path"
        ).fetchall()
    results = []
    for path, value in rows:
        found = find_executor(home.config.get("rotation.executor"), path)
        verdict = None if found is None else _works(found[1], bytes(value))
        results.append(_resolve(home, path, bytes(value), verdict, found, now))
    return results


def reassert_local(conn: Any) -> None:
    """Inside a bundle's transaction (SQLAlchemy connection): keep local versions that the
    bundle does not carry yet as current."""
    from relay.db import bulk_execute, fetch_all

    rows = fetch_all(
        conn,
        "SELECT r.path, r.version, r.value, s.version, s.value FROM rotation_state r "
        "JOIN secrets s ON s.path = r.path WHERE r.state = 'local'",
    )
    behind = [(v, value, p) for p, v, value, held, _ in rows if held < v]
    confirmed = [(p,) for p, v, value, held, same in rows if held > v or (held, same) == (v, value)]
    bulk_execute(conn, "UPDATE secrets SET version = ?, value = ? WHERE path = ?", behind)
    bulk_execute(conn, "DELETE FROM rotation_state WHERE path = ?", confirmed)


def after_import(home: Home, now: int) -> None:
    """What an applied bundle may set off: answered requests reported, expiring secrets
    requested. Errors here never undo the import (it is committed)."""
    note_applied(home, now)
    request_expiring(home, now)


def _works(runner: Executor, value: bytes) -> bool | None:
    try:
        return runner.works(value)
    except RelayError:
        return None


def _resolve(
    home: Home,
    path: str,
    value: bytes,
    verdict: bool | None,
    found: tuple[ExecutorConfig, Executor] | None,
    now: int,
) -> LocalResult:
    kind = found[1].kind if found else "none"
    if verdict is True:
        version = _commit(home, path, value, now, "recovered", f"candidate works ({kind})")
        return LocalResult(path, "recovered", version)
    if verdict is False:
        with raw_connection(home) as conn:
            execute = executor(conn)
            with immediate(conn):
                execute("DELETE FROM rotation_state WHERE path = ?", (path,))
                _outcome(execute, path, None, "abandoned", "the candidate does not work", now)
        _deliver(home)
        return LocalResult(path, "abandoned", None)
    with raw_connection(home) as conn:
        execute = executor(conn)
        with immediate(conn):
            log.append(execute, "rotation.unresolved", {"path": path, "executor": kind})
    _deliver(home)
    return LocalResult(path, "unresolved", None, "the executor cannot tell whether it works")


def _stage_candidate(home: Home, path: str, kind: str, value: bytes, now: int) -> int:
    with raw_connection(home) as conn:
        execute = executor(conn)
        with immediate(conn):
            current = _current(execute, path)
            if current is None:
                raise SecretError(f"no secret {path!r} on this agent", code=NOT_FOUND)
            busy = _state(execute, path) == "candidate"
            if busy:
                log.append(
                    execute, "rotation.refused", {"path": path, "reason": ROTATION_IN_PROGRESS}
                )
            else:
                execute("DELETE FROM rotation_state WHERE path = ?", (path,))
                execute(
                    "INSERT INTO rotation_state (path, state, base, value, updated_at) "
                    "VALUES (?, 'candidate', ?, ?, ?)",
                    (path, current[0], value, now),
                )
                fields: dict[str, FieldValue] = {
                    "path": path,
                    "version": current[0],
                    "executor": kind,
                }
                log.append(execute, "rotation.started", fields)
    _deliver(home)
    if busy:
        raise UsageError(f"a rotation of {path} is already under way", code=ROTATION_IN_PROGRESS)
    return int(current[0])


def _fail(home: Home, path: str, base: int, exc: ExecutorFailed, now: int) -> LocalResult:
    status = "timeout" if exc.code == ROTATION_TIMEOUT else "failed"
    with raw_connection(home) as conn:
        execute = executor(conn)
        with immediate(conn):
            execute("DELETE FROM rotation_state WHERE path = ? AND state = 'candidate'", (path,))
            log.append(
                execute,
                "rotation.failed",
                {"path": path, "version": base, "reason": status, "detail": exc.message},
            )
            _outcome(execute, path, None, status, exc.message, now)
    _deliver(home)
    return LocalResult(path, status, None, exc.message)


def _commit(home: Home, path: str, value: bytes, now: int, status: str, detail: str) -> int:
    """The new value becomes current (old one previous), escrow and outcome queued: one
    transaction."""
    with raw_connection(home) as conn:
        execute = executor(conn)
        with immediate(conn):
            current = _current(execute, path)
            base = current[0] if current else 0
            version = base + 1
            if current is not None:
                execute(
                    "INSERT INTO secret_versions (path, label, version, value, expires_at, at, "
                    "overlap, updated_at) VALUES (?, 'previous', ?, ?, ?, ?, NULL, ?) "
                    "ON CONFLICT (path, label) DO UPDATE SET version = excluded.version, "
                    "value = excluded.value, expires_at = excluded.expires_at, "
                    "at = excluded.at, updated_at = excluded.updated_at",
                    (path, base, current[1], current[2], now + LOCAL_OVERLAP, now),
                )
            execute(
                "UPDATE secrets SET version = ?, value = ?, expires_at = NULL, updated_at = ? "
                "WHERE path = ?",
                (version, value, now, path),
            )
            execute(
                "UPDATE rotation_state SET state = 'local', version = ?, updated_at = ? "
                "WHERE path = ?",
                (version, now, path),
            )
            add_item(
                execute,
                "rotation.applied" if status == "applied" else "rotation.recovered",
                {"path": path, "version": version, "replaced": base},
                {"kind": "escrow", "path": path, "version": version, "base": base, "value": value},
                now,
            )
            _outcome(execute, path, version, status, detail, now)
    _deliver(home)
    return version


def _outcome(
    execute: Any, path: str, version: int | None, status: str, detail: str, now: int
) -> None:
    add_item(
        execute,
        "rotation.outcome",
        {"path": path, "version": version, "status": status},
        {
            "kind": "outcome",
            "path": path,
            "version": version,
            "status": status,
            "detail": detail[:200],
        },
        now,
    )


def _current(execute: Any, path: str) -> tuple[int, bytes, int | None] | None:
    rows = execute("SELECT version, value, expires_at FROM secrets WHERE path = ?", (path,))
    return None if not rows else (int(rows[0][0]), bytes(rows[0][1]), rows[0][2])


def _state(execute: Any, path: str) -> str | None:
    rows = execute("SELECT state FROM rotation_state WHERE path = ?", (path,))
    return None if not rows else str(rows[0][0])


def _deliver(home: Home) -> None:
    from inner_agent.audit import AgentAudit

    AgentAudit(home).deliver()
