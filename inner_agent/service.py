"""The agent service's logic, free of HTTP: token grants, secret reads, freshness, imports.

The HTTP layer (:mod:`inner_agent.api`) turns :class:`ApiError` into JSON; the inbox
(:mod:`inner_agent.inbox`) reports each file's outcome to :meth:`AgentService.after_import`.
Every grant and every denial goes through :func:`inner_agent.events.record`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from inner_agent import denials, events
from inner_agent.activation import activation_fields
from inner_agent.apps import App, authenticate, list_apps, looks_like_client_id
from inner_agent.cache import SecretCache
from inner_agent.fail_closed import FreshnessRules
from inner_agent.importer import Outcome
from inner_agent.intake_health import IntakeHealth, RejectionBudget
from inner_agent.labels import CURRENT, LABELS
from inner_agent.lookup import Secret
from inner_agent.metrics import AgentMetrics, Snapshot
from inner_agent.service_config import ServiceSettings
from inner_agent.store import AgentStore
from inner_agent.tokens import FailureThrottle, TokenTable
from relay.bundle.policy_rows import PolicyRow
from relay.codes import (
    BAD_PATH,
    BAD_VERSION,
    EXPIRED,
    FORBIDDEN,
    INVALID_CLIENT,
    NOT_FOUND,
    STALE,
    TOO_MANY_REQUESTS,
    UNAUTHORIZED,
)
from relay.errors import ApiError
from relay.paths import is_valid_path
from relay.trust.clock import TimeJudgement, judge_time

__all__ = ["AgentService", "ApiError", "IssuedToken", "StoreWatch"]

DAY = 86400
MALFORMED_CLIENT = "?"  # the throttle's one key for every value not shaped like a client id


@dataclass(frozen=True)
class IssuedToken:
    """An access token and its lifetime in seconds."""

    token: str
    expires_in: int

    def __repr__(self) -> str:
        return f"IssuedToken(<hidden>, expires_in={self.expires_in})"


class StoreWatch:
    """Notices commits by other processes (``relay agent import``, ``app rm``) from the store
    files' size and mtime: two ``stat`` calls per check."""

    def __init__(self, store_path: Path) -> None:
        self.paths = (store_path, store_path.with_name(store_path.name + "-wal"))
        self._last: tuple[tuple[int, int], ...] | None = None

    def changed(self) -> bool:
        """Whether the files changed since the last call (True on the first)."""
        now = tuple(_signature(p) for p in self.paths)
        if now == self._last:
            return False
        self._last = now
        return True


def _policy_rows(text: str | None) -> list[PolicyRow]:
    """The freshness rows the last bundle shipped (kept as JSON in the store's meta)."""
    import json

    return [(str(p), a, bool(f)) for p, a, f in json.loads(text)] if text else []


def _whole(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds)


def _signature(path: Path) -> tuple[int, int]:
    try:
        info = path.stat()
    except FileNotFoundError:
        return (-1, -1)
    return (info.st_size, info.st_mtime_ns)


class AgentService:
    """The state one ``relay agent run`` process serves from."""

    def __init__(
        self,
        store: AgentStore,
        store_path: Path,
        settings: ServiceSettings,
        clock: Callable[[], float] = time.time,
        acknowledge: Callable[[int], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.acknowledge = acknowledge
        self.tokens = TokenTable(settings.token_ttl, clock=monotonic)
        self.throttle = FailureThrottle(clock=monotonic)
        self.denials = denials.DenialAggregator(clock=monotonic)
        self.cache = SecretCache(clock=clock)
        self.last_import: int | None = None
        self._watch = StoreWatch(store_path)
        self._apps: dict[str, App] = {}  # by client_id: a token names a registration
        self._policies: list[PolicyRow] = []
        self._marker: tuple[str, str] | None = None
        self._last_fresh: int | None = None
        self._stale_recorded = False
        self._lock = threading.Lock()
        self.intake = IntakeHealth(clock)
        self.audit_budget = RejectionBudget(clock)
        self.refresh()
        self.metrics = AgentMetrics(self.snapshot)

    # -- state shared with other processes -----------------------------------------------------

    def refresh(self, force: bool = False) -> None:
        """Reload apps and freshness and drop cached values if secrets or apps changed.

        The store files also change with every audit record; one small query tells those
        commits (which leave the cache alone) from imports and app changes."""
        if not force and not self._watch.changed():
            return
        marker = self.store.change_marker()
        if not force and marker == self._marker:
            return
        with self._lock:
            self._marker = marker
            self.cache.invalidate()
            self._apps = {a.client_id: a for a in list_apps(self.store)}
            self._policies = _policy_rows(self.store.get_meta("policies"))
            created = self.store.get_meta("last_bundle_created")
            imported = self.store.get_meta("last_import")
            fresh = created or imported  # stores written before bundle times were kept
            self._last_fresh = int(fresh) if fresh else None
            self.last_import = int(imported) if imported else None

    # -- tokens --------------------------------------------------------------------------------

    def issue_token(self, client_id: str, client_secret: str) -> IssuedToken:
        """A token for valid client credentials; ``invalid_client`` (401) otherwise.

        The credentials are always checked first, so the right secret gets its token however
        many wrong ones came before; only further *failures* are answered 429. A ``client_id``
        not shaped like one (a secret in the wrong field, say) is never recorded."""
        shaped = looks_like_client_id(client_id)
        app = authenticate(self.store, client_id, client_secret) if shaped else None
        if app is None:
            self._refuse_client(client_id if shaped else None)
        self.refresh(force=app.client_id not in self._apps)
        token = self.tokens.issue(app.client_id)
        events.record(
            "token.issued", app=app.name, client_id=app.client_id, expires_in=self.tokens.ttl
        )
        return IssuedToken(token, self.tokens.ttl)

    def _refuse_client(self, client_id: str | None) -> NoReturn:
        """401 ``invalid_client`` (recorded), or 429 once this client id failed too often."""
        key = client_id or MALFORMED_CLIENT
        if self.throttle.blocked(key):
            raise ApiError(429, TOO_MANY_REQUESTS, "too many failed attempts; try again later")
        self.throttle.failed(key)
        self.denials.note("token.denied", INVALID_CLIENT, app=None, client_id=client_id)
        raise ApiError(401, INVALID_CLIENT, "unknown client or wrong client secret")

    def app_of(self, token: str | None, path: str | None = None) -> App:
        """The app a bearer token belongs to; ``unauthorized`` (401) otherwise."""
        self.refresh()
        registration = self.tokens.resolve(token) if token else None
        app = self._apps.get(registration) if registration is not None else None
        if app is None:
            reason = "missing token" if not token else "bad, expired or revoked token"
            shown = None if path is None else path[:256]
            self.denials.note("secret.denied", UNAUTHORIZED, app=None, path=shown)
            raise ApiError(401, UNAUTHORIZED, reason)
        return app

    # -- reading secrets -----------------------------------------------------------------------

    def read(self, token: str | None, path: str, label: str = CURRENT) -> Secret:
        """The ``label`` version (current, previous or pending) of the secret at ``path`` for
        the holder of ``token``, or an :class:`ApiError`."""
        app = self.app_of(token, path)
        if label not in LABELS:
            message = "version is current, previous or pending"
            self._deny(app, path[:256], 400, BAD_VERSION, message)
        if not is_valid_path(path):
            self._deny(app, path[:256], 400, BAD_PATH, "not a valid secret path")
        if not app.may_read(path):
            self._deny(app, path, 403, FORBIDDEN, "this app may not read this path")
        now = self.clock()
        if self._fails_closed(path, now):
            self._deny(app, path, 410, STALE, "the agent is stale and this secret fails closed")
        secret = self._lookup(path, int(now), label)
        if secret is None:
            self._deny(app, path, 404, NOT_FOUND, "no such secret")
        if secret.expires_at is not None and now >= secret.expires_at:
            self._deny(app, path, 410, EXPIRED, "this secret has expired")
        extra = {} if label == CURRENT else {"label": label}
        events.record("secret.read", app=app.name, path=path, version=secret.version, **extra)
        return secret

    def refuse_encoded_path(self, token: str | None, path: str) -> NoReturn:
        """A path that arrived with ``%2F``, ``%5C``, ``%00`` or ``%2E``: 401 or 400, recorded."""
        app = self.app_of(token, path)
        self._deny(app, path[:256], 400, BAD_PATH, "encoded separators are not allowed in paths")

    def _fails_closed(self, path: str, now: float) -> bool:
        """The rule every reader applies (:mod:`inner_agent.fail_closed`)."""
        rules = FreshnessRules(
            self.settings.fail_closed,
            self.settings.max_staleness,
            tuple(self._policies),
            self._last_fresh,
        )
        return rules.fails_closed(path, now)

    def _lookup(self, path: str, now: int, label: str) -> Secret | None:
        if label != CURRENT:  # previous and pending are rare reads: never cached
            return self.store.get_secret(path, now, label)
        cached = self.cache.get(path)
        if cached is not None:
            return cached
        generation = self.cache.generation
        secret = self.store.get_secret(path, now)
        if secret is not None:
            self.cache.put(secret, generation)
        return secret

    def _deny(self, app: App, path: str, status: int, code: str, message: str) -> NoReturn:
        events.record("secret.denied", app=app.name, path=path, reason=code)
        raise ApiError(status, code, message)

    # -- freshness -----------------------------------------------------------------------------

    def seconds_since_fresh(self, now: float) -> float | None:
        """Age of the newest applied bundle, by its creation time."""
        return None if self._last_fresh is None else max(0.0, now - self._last_fresh)

    def is_stale(self, now: float) -> bool:
        """Past ``agent.max_staleness`` (never stale when it is not set)."""
        limit = self.settings.max_staleness
        if limit is None:
            return False
        age = self.seconds_since_fresh(now)
        return age is None or age > limit

    def check_freshness(self) -> bool:
        """Record ``agent.stale`` once per stale period; returns whether stale."""
        self.report_suppressed()
        self.refresh()
        now = self.clock()
        stale = self.is_stale(now)
        if stale and not self._stale_recorded:
            events.record(
                "agent.stale",
                seconds_since_fresh=_whole(self.seconds_since_fresh(now)),
                max_staleness=self.settings.max_staleness,
            )
        elif not stale and self._stale_recorded:
            events.record("agent.fresh", seconds_since_fresh=_whole(self.seconds_since_fresh(now)))
        self._stale_recorded = stale
        return stale

    # -- imports -------------------------------------------------------------------------------

    def after_import(self, outcome: Outcome) -> None:
        """Count, record and take into account one inbox file's outcome."""
        fields = outcome.audit_fields()  # the same fields `relay agent import` records
        if outcome.status == "applied":
            self.refresh(force=True)
            self.metrics.applied.inc()
            if outcome.recorded:  # committed with the apply: log it, do not chain it twice
                events.recorded_with("bundle.applied", **fields)
            else:
                events.record("bundle.applied", **fields)
            for activated in activation_fields(outcome.result):
                events.record("secret.activated", **activated)
            ack = outcome.result.audit_ack if outcome.result else 0
            if ack and self.acknowledge is not None:
                self.acknowledge(ack)
            self.check_freshness()
        elif outcome.status == "duplicate":
            self.metrics.duplicates.inc()
            events.record("bundle.duplicate", **fields)
        elif outcome.status == "skipped":
            events.record("bundle.skipped", **fields)
        else:
            self.metrics.rejected.labels(reason=outcome.code or "unknown").inc()
            self.intake.rejected()
            if self.audit_budget.admit(outcome.code or "unknown"):
                events.record("bundle.rejected", **fields, quarantined=outcome.quarantined)
            self.report_suppressed()

    def report_suppressed(self) -> None:
        """One ``bundle.rejected_summary`` record for the rejections of a flood that were
        counted rather than recorded one by one (called after imports and every few seconds)."""
        counts = self.audit_budget.summary()
        if counts:
            events.record(
                "bundle.rejected_summary",
                count=sum(counts.values()),
                reasons=",".join(f"{code}={n}" for code, n in sorted(counts.items())),
            )

    def scan_failed(self, what: str) -> None:
        """An inbox scan raised: ``degraded`` until one succeeds (``what``: a type name)."""
        self.metrics.scan_failures.inc()
        if self.intake.scan_failed(what):
            events.record("inbox.scan_failed", error=what)

    def scan_ok(self) -> None:
        """An inbox scan completed."""
        self.intake.scan_ok()

    # -- reporting -----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Values for health and metrics."""
        now = self.clock()
        clock = self.judge_clock()
        return Snapshot(
            secrets=self.store.count_secrets(),
            expiring_24h=self.store.count_expiring(int(now), DAY),
            seconds_since_fresh=self.seconds_since_fresh(now),
            stale=self.is_stale(now),
            live_tokens=self.tokens.prune(),
            degraded=self.intake.degraded(),
            clock_behind=clock.behind,
            clock_ahead=clock.ahead,
        )

    def judge_clock(self) -> TimeJudgement:
        """The clock against the persisted time floor (``relay.trust.clock``)."""
        from inner_agent.time_floor import read_floor

        floor = read_floor(self.store.engine)
        skew, ahead = self.settings.clock_skew, self.settings.clock_ahead_limit
        return judge_time(int(self.clock()), floor, skew, ahead)

    def health(self) -> dict[str, object]:
        """The body of ``GET /v1/health``."""
        self.refresh()
        s = self.snapshot()
        return {
            "status": "stale" if s.stale else "degraded" if s.degraded else "ok",
            "stale": s.stale,
            "degraded": s.degraded,
            "last_import": self.last_import,
            "seconds_since_fresh_bundle": s.seconds_since_fresh,
            "max_staleness": self.settings.max_staleness,
            "secrets": s.secrets,
            "secrets_expiring_24h": s.expiring_24h,
            "clock_behind": s.clock_behind,
            "clock_ahead": s.clock_ahead,
            "time_floor": self.judge_clock().floor,
        }
