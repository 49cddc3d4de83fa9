"""The agent service on injected clocks, in process, over a real store: token lifetimes, the
failed-authentication window, staleness and secret expiry, without waiting for any of them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from inner_agent import events
from inner_agent.service import AgentService, ApiError
from inner_agent.service_config import ServiceSettings
from inner_agent.store import AgentStore
from inner_agent.tokens import FAILURE_WINDOW, MAX_FAILURES
from relay.home import Home
from tests.conftest import Pair, make_pair, run_relay

TTL = 3600
STALENESS = 600


@dataclass
class Clocks:
    """The wall clock (staleness, expiry) and the monotonic one (tokens, throttle)."""

    wall: float = field(default_factory=time.time)
    mono: float = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


@dataclass
class Service:
    service: AgentService
    clocks: Clocks
    pair: Pair
    apps: dict[str, dict[str, str]]
    recorded: list[tuple[str, dict[str, object]]]

    def token(self, app: str = "web") -> str:
        creds = self.apps[app]
        return self.service.issue_token(creds["client_id"], creds["client_secret"]).token

    def status(self, token: str | None, path: str) -> int:
        try:
            self.service.read(token, path)
        except ApiError as exc:
            return exc.status
        return 200

    def of(self, event_type: str) -> list[dict[str, object]]:
        return [fields for kind, fields in self.recorded if kind == event_type]


def add_app(pair: Pair, name: str) -> dict[str, str]:
    home = str(pair.ag)
    added = run_relay("agent", "app", "add", "--home", home, name, "--allow", "db/web/*", "--json")
    assert added.status == 0, added.err
    doc = json.loads(added.out)
    return {"client_id": doc["client_id"], "client_secret": doc["client_secret"]}


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    pair = make_pair(tmp_path)
    assert pair.gateway("grant", "plant7", "**").status == 0
    pair.put("db/web/critical", b"c-1")
    pair.put("db/web/relaxed", b"r-1")
    pair.put("db/web/short", b"s-1", "--ttl", "1h")
    pair.export()
    assert pair.agent("import", str(pair.out)).status == 0
    for key, value in {
        "api.token_ttl": f"{TTL}s",
        "agent.max_staleness": f"{STALENESS}s",
        "agent.fail_closed": "db/web/critical",
    }.items():
        assert pair.agent("config", "set", key, value).status == 0
    apps = {"web": add_app(pair, "web")}
    home = Home.open(pair.ag, "agent")
    store = AgentStore.open(home)
    clocks = Clocks()
    recorded: list[tuple[str, dict[str, object]]] = []
    events.set_sink(lambda kind, fields: recorded.append((kind, dict(fields))))
    try:
        service = AgentService(
            store,
            home.store_path,
            ServiceSettings.from_config(home.config),
            clock=lambda: clocks.wall,
            monotonic=lambda: clocks.mono,
        )
        yield Service(service, clocks, pair, apps, recorded)
    finally:
        events.set_sink(None)
        store.close()


def test_a_token_lives_exactly_its_ttl(svc: Service) -> None:
    token = svc.token()
    svc.clocks.advance(TTL - 1)
    assert svc.status(token, "db/web/relaxed") == 200
    svc.clocks.advance(1)
    assert svc.status(token, "db/web/relaxed") == 401


def test_a_reregistered_name_does_not_revive_old_tokens(svc: Service) -> None:
    token = svc.token()
    assert run_relay("agent", "app", "rm", "--home", str(svc.pair.ag), "web").status == 0
    svc.apps["web"] = add_app(svc.pair, "web")
    assert svc.status(token, "db/web/relaxed") == 401  # well within its hour
    assert svc.status(svc.token(), "db/web/relaxed") == 200


def test_failures_are_throttled_in_a_window_and_the_right_secret_never_is(svc: Service) -> None:
    client_id = svc.apps["web"]["client_id"]

    def attempt(secret: str) -> int:
        try:
            svc.service.issue_token(client_id, secret)
        except ApiError as exc:
            return exc.status
        return 200

    assert [attempt("rs_wrong") for _ in range(MAX_FAILURES)] == [401] * MAX_FAILURES
    assert attempt("rs_wrong") == 429
    assert attempt(svc.apps["web"]["client_secret"]) == 200
    assert len(svc.of("token.denied")) == 1  # one sample; the rest are counted
    svc.service.denials.flush(force=True)
    assert [e["count"] for e in svc.of("unauthenticated.denied")] == [MAX_FAILURES - 1]
    svc.clocks.advance(FAILURE_WINDOW + 1)
    assert attempt("rs_wrong") == 401  # the window forgave


def test_a_value_not_shaped_like_a_client_id_is_not_recorded(svc: Service) -> None:
    secret = svc.apps["web"]["client_secret"]
    with pytest.raises(ApiError) as refused:
        svc.service.issue_token(secret, svc.apps["web"]["client_id"])
    assert refused.value.code == "invalid_client"
    assert svc.of("token.denied") == [{"app": None, "client_id": None, "reason": "invalid_client"}]
    assert secret not in repr(svc.recorded)


def test_staleness_fails_closed_and_is_recorded_once_per_period(svc: Service) -> None:
    token = svc.token()
    assert svc.service.check_freshness() is False
    svc.clocks.advance(STALENESS + 1)
    assert svc.service.check_freshness() is True
    assert svc.service.check_freshness() is True
    assert len(svc.of("agent.stale")) == 1
    assert svc.status(token, "db/web/critical") == 410
    assert svc.status(token, "db/web/relaxed") == 200
    health = svc.service.health()
    assert health["stale"] is True
    assert health["status"] == "stale"
    assert {"app": "web", "path": "db/web/critical", "reason": "stale"} in svc.of("secret.denied")


def test_a_secret_expires_at_its_time(svc: Service) -> None:
    token = svc.token()
    assert svc.status(token, "db/web/short") == 200
    assert svc.service.snapshot().expiring_24h == 1
    svc.clocks.advance(3600)
    fresh = svc.token()  # the old token's hour is up too
    assert svc.status(fresh, "db/web/short") == 410
    assert {"app": "web", "path": "db/web/short", "reason": "expired"} in svc.of("secret.denied")
