"""``relay doctor``: what is wrong with a home, and how to fix it, without changing anything.

Each check gives one :class:`Finding` (``ok``, ``warn`` or ``fail``, with the fix). The store is
opened read-only through the raw SQLCipher driver (no migration, no audit record); a PostgreSQL
gateway store through SQLAlchemy. ``now`` is passed in, so the clock check is testable.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay.errors import RelayError
from relay.home import KEY_FILE, Home

OK, WARN, FAIL = "ok", "warn", "fail"
CLOCK_SLACK = 300  # seconds a clock may be behind a signed time before it is an error
AUDIT_BACKLOG_WARN = 100_000
ACK_LAG_WARN = 7 * 86400  # a week without the gateway acknowledging the audit: the return is stuck


@dataclass(frozen=True)
class Finding:
    """The result of one check."""

    check: str
    status: str
    message: str
    fix: str = ""

    def line(self) -> str:
        """One line for humans: ``ok   check  message`` (``— fix: …`` when there is one)."""
        text = f"{self.status:<4} {self.check:<12} {self.message}"
        return f"{text} — fix: {self.fix}" if self.fix else text


@dataclass
class Examination:
    """What the checks share: the home, its side, the open store (when it could be opened)."""

    path: Path
    now: int
    side: str = ""
    home: Home | None = None
    conn: Any = None
    findings: list[Finding] = field(default_factory=list)

    def add(self, check: str, status: str, message: str, fix: str = "") -> None:
        self.findings.append(Finding(check, status, message, fix))

    def meta(self, key: str) -> str | None:
        rows = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchall()
        return str(rows[0][0]) if rows else None


def exit_status(findings: list[Finding]) -> int:
    """0 when every check is ok, 1 with a warning, 2 with a failure."""
    statuses = {f.status for f in findings}
    return 2 if FAIL in statuses else 1 if WARN in statuses else 0


def examine(path: Path, now: int) -> list[Finding]:
    """Run every check that applies to the home at ``path``."""
    ex = Examination(path, now)
    if not _check_home(ex) or not _check_key(ex):
        return ex.findings
    with _store(ex):
        for check in _STORE_CHECKS:
            if ex.conn is None:  # not opened, or damaged: the other store checks cannot run
                break
            _isolated(ex, check)
    from relay.doctor_host import HOST_CHECKS

    for check in HOST_CHECKS:
        _isolated(ex, check)
    return ex.findings


def _isolated(ex: Examination, check: Callable[[Examination], None]) -> None:
    """One check's error is its failure, never the end of the examination."""
    name = check.__name__.removeprefix("_check_")
    try:
        check(ex)
    except RelayError as exc:
        ex.add(name, FAIL, exc.diagnostics())
    except Exception as exc:  # a check must not hide the others
        ex.add(name, FAIL, f"could not check: {type(exc).__name__}")


# -- the home and its keys -------------------------------------------------------------------


def _check_home(ex: Examination) -> bool:
    if not ex.path.is_dir():
        ex.add("home", FAIL, f"{ex.path} is not a folder", "pass the right --home")
        return False
    mode = stat.S_IMODE(ex.path.stat().st_mode)
    if mode & 0o077:
        ex.add("home", FAIL, f"{ex.path} is mode {mode:o}", f"chmod 700 {ex.path}")
    else:
        ex.add("home", OK, f"{ex.path} (mode {mode:o})")
    return True


def _check_key(ex: Examination) -> bool:
    key = ex.path / KEY_FILE
    if not key.exists():
        ex.add(
            "key_file",
            FAIL,
            f"{key} is missing",
            "restore the home from a backup (relay agent|gateway restore), or init a new one",
        )
        return False
    mode = stat.S_IMODE(key.lstat().st_mode)
    if mode & 0o077:
        ex.add("key_file", FAIL, f"{key} is mode {mode:o}", f"chmod 600 {key}")
        return False
    try:
        doc = json.loads(key.read_text(encoding="ascii"))
        ex.side = str(doc["role"])
        ex.home = Home.open(ex.path, ex.side)
    except (ValueError, KeyError, TypeError, RelayError):
        ex.add("key_file", FAIL, f"{key} is not a readable relay key file", "restore a backup")
        return False
    if doc.get("protection") == "argon2id":
        ex.add("key_file", OK, f"{ex.side} keys, mode {mode:o}, wrapped with a passphrase")
    else:
        ex.add(
            "key_file",
            WARN,
            f"{ex.side} keys, mode {mode:o}, not wrapped with a passphrase",
            "init homes with RELAY_PASSPHRASE set (systemd: LoadCredential), see docs",
        )
    return True


# -- the store -------------------------------------------------------------------------------


@contextmanager
def _store(ex: Examination) -> Iterator[None]:
    assert ex.home is not None  # noqa: S101 - _check_key succeeded
    if ex.side == "gateway" and str(ex.home.config.get("gateway.store_url")):
        _isolated(ex, _check_server_store)
        yield
        return
    try:
        key = ex.home.secrets.store_key
    except RelayError as exc:
        ex.add("store", FAIL, f"cannot unlock the keys: {exc.diagnostics()}", "see the message")
        yield
        return
    path = ex.home.store_path
    if not path.exists():
        ex.add("store", FAIL, f"{path} is missing", "restore the home from a backup")
        yield
        return
    import sqlcipher3

    conn = sqlcipher3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        ex.conn = conn
        yield
    finally:
        conn.close()


def _check_store(ex: Examination) -> None:
    import sqlcipher3

    try:
        cipher = ex.conn.execute("PRAGMA cipher_integrity_check").fetchall()
        quick = [row[0] for row in ex.conn.execute("PRAGMA quick_check").fetchall()]
    except sqlcipher3.DatabaseError:
        cipher, quick = [("the file cannot be read with this home's key",)], ["error"]
    if cipher or quick != ["ok"]:
        detail = str(cipher[0][0]) if cipher else str(quick[0])
        ex.conn = None  # the other store checks would read damaged pages
        ex.add(
            "store",
            FAIL,
            f"integrity check failed: {detail[:120]}",
            "stop the service and restore the home from a backup (relay agent|gateway restore)",
        )
        return
    ex.add("store", OK, f"{ex.home.store_path if ex.home else ''}: integrity ok")
    _check_schema(ex)


def _check_schema(ex: Examination) -> None:
    from relay.store_version import read_version

    if ex.side == "gateway":
        rows = ex.conn.execute(
            "SELECT name FROM sqlite_master WHERE name = 'alembic_version'"
        ).fetchall()
        query = "SELECT version_num FROM alembic_version"
        found = ex.conn.execute(query).fetchall() if rows else []
        from outer_gateway.migrations import HEAD

        revision = str(found[0][0]) if found else "0001"
        status = OK if revision == HEAD else WARN
        ex.add(
            "schema",
            status,
            f"revision {revision} (this relay: {HEAD})",
            "" if status == OK else "the next gateway command upgrades it (docs/upgrading.md)",
        )
        return
    steps = _steps(ex.side)
    current = len(steps) + 1
    version = read_version(ex.conn)
    if version > current:
        ex.add(
            "schema",
            FAIL,
            f"version {version}, newer than this relay ({current})",
            "install the newer relay again",
        )
    elif version < current:
        ex.add(
            "schema",
            WARN,
            f"version {version} (this relay: {current})",
            "the next command upgrades it, after a backup (docs/upgrading.md)",
        )
    else:
        ex.add("schema", OK, f"version {version}")


def _steps(side: str) -> tuple[Any, ...]:
    if side == "agent":
        from inner_agent.migrations import STEPS
    else:
        from relay.hop.migrations import STEPS
    return STEPS


def _check_server_store(ex: Examination) -> None:
    from relay.db import server_engine

    assert ex.home is not None  # noqa: S101
    engine = server_engine(str(ex.home.config.get("gateway.store_url")))
    try:
        from outer_gateway.migrations import HEAD, stored_revision

        with engine.connect() as conn:
            revision = stored_revision(conn)
        ex.add(
            "store",
            OK,
            f"database server reachable, revision {revision or 'none'} (this relay: {HEAD})",
        )
    except Exception as exc:  # any driver error: the server or its URL is the problem
        ex.add(
            "store",
            FAIL,
            f"database server unreachable ({type(exc).__name__})",
            "check gateway.store_url and the server",
        )
    finally:
        engine.dispose()


def _check_trust(ex: Examination) -> None:
    table, what, fix = {
        "agent": ("trusted", "trusted gateway", "relay agent trust --home H GATEWAY.identity"),
        "gateway": ("agents", "enrolled agent", "relay gateway enroll --home H AGENT.request"),
        "hop": ("pinned", "pinned sender", "relay hop --home H --trust IDENTITY …"),
    }[ex.side]
    query = f"SELECT name, key_id, sign_public, box_public FROM {table}"  # noqa: S608
    rows = ex.conn.execute(query).fetchall()
    names = [str(r[0]) for r in rows]
    if ex.side == "hop":  # gateways trusted by their root (hop store version 2)
        names += [f"{g} (root)" for g in _rooted_gateways(ex)]
    broken = [str(r[0]) for r in rows if not _consistent(r)]
    if broken:
        ex.add(
            "trust",
            FAIL,
            f"{what} {broken[0]}: its key id does not match its keys",
            "the store was altered: restore a backup and compare fingerprints again",
        )
    elif not names:
        ex.add("trust", FAIL if ex.side == "agent" else WARN, f"no {what}", fix)
    else:
        ex.add("trust", OK, f"{len(names)} {what}(s): {', '.join(sorted(names)[:5])}")


def _rooted_gateways(ex: Examination) -> list[str]:
    try:
        rows = ex.conn.execute("SELECT DISTINCT gateway FROM gateway_roots").fetchall()
    except Exception:  # a store older than the table
        return []
    return [str(r[0]) for r in rows]


def _consistent(row: Any) -> bool:
    """A pinned identity's key id is derived from its two public keys (a valid registration)."""
    from relay import crypto

    try:
        return bool(crypto.key_id(bytes(row[2]), bytes(row[3])) == row[1])
    except (ValueError, TypeError):
        return False


def _newest_signed_time(ex: Examination) -> int | None:
    if ex.side == "agent":
        value = ex.meta("last_bundle_created")
        return int(value) if value else None
    if ex.side == "gateway":
        row = ex.conn.execute("SELECT max(last_export) FROM agents").fetchone()
        return int(row[0]) if row and row[0] is not None else None
    return None


def _check_clock(ex: Examination) -> None:
    newest = _newest_signed_time(ex)
    if newest is None:
        ex.add("clock", OK, "nothing signed yet to compare the clock with")
    elif ex.now + CLOCK_SLACK < newest:
        ex.add(
            "clock",
            FAIL,
            f"the clock is {_human(newest - ex.now)} behind the newest signed time",
            "set the system clock (NTP or by hand), then rerun",
        )
    else:
        ex.add("clock", OK, "not behind the newest signed time")


def _check_staleness(ex: Examination) -> None:
    if ex.side != "agent":
        return
    from relay.durations import parse_duration

    assert ex.home is not None  # noqa: S101
    created = ex.meta("last_bundle_created") or ex.meta("last_import")
    limit_text = str(ex.home.config.get("agent.max_staleness"))
    if created is None:
        ex.add("staleness", WARN, "no bundle imported yet", "import the first bundle")
        return
    age = ex.now - int(created)
    if limit_text and age > parse_duration(limit_text):
        ex.add(
            "staleness",
            FAIL,
            f"newest bundle is {_human(age)} old (limit {limit_text})",
            "check the link from the gateway (export, transport, inbox)",
        )
    else:
        ex.add("staleness", OK, f"newest bundle is {_human(max(age, 0))} old")


def _check_audit(ex: Examination) -> None:
    row = ex.conn.execute("SELECT max(seq), min(seq) FROM audit_log").fetchone()
    head = int(row[0] or 0)
    if ex.side != "agent":
        ex.add("audit", OK, f"own chain at seq {head}")
        return
    acked = int(ex.meta("audit_acked") or 0)
    backlog = head - acked
    lag = _ack_lag(ex, acked) if backlog > 0 else 0
    status = WARN if backlog > AUDIT_BACKLOG_WARN or lag > ACK_LAG_WARN else OK
    ex.add(
        "audit",
        status,
        f"chain at seq {head}, acknowledged {acked}, backlog {backlog}, "
        f"oldest unacknowledged {_human(lag)} old",
        "export audit bundles (relay agent audit export) and import them at the gateway"
        if status == WARN
        else "",
    )


def _ack_lag(ex: Examination, acked: int) -> int:
    """Seconds since the oldest record the gateway has not acknowledged was written."""
    from datetime import datetime

    row = ex.conn.execute(
        "SELECT time FROM audit_log WHERE seq > ? ORDER BY seq LIMIT 1", (acked,)
    ).fetchone()
    if row is None:
        return 0
    written = datetime.fromisoformat(str(row[0]).replace("Z", "+00:00")).timestamp()
    return max(0, ex.now - int(written))


_STORE_CHECKS = (_check_store, _check_trust, _check_clock, _check_staleness, _check_audit)


def _human(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
