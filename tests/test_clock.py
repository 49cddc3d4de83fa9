"""Time on an isolated host: clock leeway, the persisted time floor, and a clock moved a year
back or a year forward (injected clocks, real stores)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inner_agent.service import AgentService
from inner_agent.service_config import ServiceSettings
from relay.trust.clock import judge_time
from relay.trust.time_floor import read_floor
from tests.trust_kit import DAY, NOW, RootedSite, make_rooted_site

YEAR = 365 * DAY


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RootedSite]:
    monkeypatch.delenv("RELAY_PASSPHRASE", raising=False)
    s = make_rooted_site(tmp_path)
    s.put("app/pw", b"first")
    assert s.deliver(s.export()).status == "applied"
    yield s
    s.close()


def _service(site: RootedSite) -> AgentService:
    settings = ServiceSettings(
        inbox=(),
        listen=None,
        unix_socket=None,
        allowed_uids=frozenset(),
        token_ttl=900,
        max_staleness=None,
        fail_closed=(),
        rescan_every=30,
        read_timeout=10,
    )
    return AgentService(site.ag, site.ag_home.store_path, settings, clock=site.clock)


def test_judge_time_never_goes_below_the_floor() -> None:
    judged = judge_time(NOW - YEAR, NOW, 300, 30 * DAY)
    assert (judged.now, judged.behind, judged.ahead) == (NOW, True, False)
    assert judge_time(NOW - 300, NOW, 300, 30 * DAY).behind is False  # within the leeway
    ahead = judge_time(NOW + YEAR, NOW, 300, 30 * DAY)
    assert (ahead.now, ahead.behind, ahead.ahead) == (NOW + YEAR, False, True)
    assert judge_time(NOW, None, 300, DAY).now == NOW


def test_the_floor_is_the_newest_signed_created_time(site: RootedSite) -> None:
    assert read_floor(site.ag.engine) == NOW
    site.gw_clock.now = NOW + 50
    site.put("app/pw", b"second")
    site.deliver(site.export())
    assert read_floor(site.ag.engine) == NOW + 50


def test_clock_a_year_back_cannot_revive_an_expired_bundle(site: RootedSite) -> None:
    # a bundle that expired an hour ago by the gateway's clock, with a new seq
    site.gw_clock.now = NOW - 2 * 3600
    site.put("app/pw", b"stale")
    stale = site.export(valid_for=3600)
    site.gw_clock.now = NOW
    site.clock.now = NOW - YEAR
    outcome = site.deliver(stale)
    assert (outcome.status, outcome.code) == ("rejected", "expired")
    assert site.value("app/pw") == b"first"
    assert "clock.behind" in site.audit_types()


def test_clock_a_year_back_still_accepts_fresh_bundles(site: RootedSite) -> None:
    site.clock.now = NOW - YEAR  # without the floor the certificate would not be valid yet
    site.gw_clock.now = NOW + 60
    site.put("app/pw", b"fresh")
    outcome = site.deliver(site.export())
    assert outcome.status == "applied", outcome.message
    assert site.value("app/pw") == b"fresh"
    health = _service(site).health()
    assert health["clock_behind"] is True and health["clock_ahead"] is False
    assert health["time_floor"] == NOW + 60
    metrics = _service(site).metrics.render().decode()
    assert "relay_clock_behind 1.0" in metrics


def test_clock_a_year_forward_refuses_and_reports(site: RootedSite) -> None:
    site.clock.now = NOW + YEAR
    site.gw_clock.now = NOW + 60
    site.put("app/pw", b"later")
    outcome = site.deliver(site.export())
    assert (outcome.status, outcome.code) == ("rejected", "cert_expired")
    assert site.value("app/pw") == b"first"
    health = _service(site).health()
    assert health["clock_ahead"] is True and health["clock_behind"] is False
    assert "relay_clock_ahead 1.0" in _service(site).metrics.render().decode()
    assert "clock.ahead" in site.audit_types()


def test_clock_skew_is_leeway_for_expiry(site: RootedSite) -> None:
    site.gw_clock.now = NOW + 10
    site.put("app/pw", b"edge")
    bundle = site.export(valid_for=3600)
    site.clock.now = NOW + 10 + 3600 + 299  # expired by 299 s: within the default 5 min
    assert site.deliver(bundle).status == "applied"
    site.gw_clock.now = NOW + 20
    site.put("app/pw", b"late")
    late = site.export(valid_for=3600)
    site.clock.now = NOW + 20 + 3600 + 301
    outcome = site.deliver(late)
    assert (outcome.status, outcome.code) == ("rejected", "expired")


def test_clock_skew_is_leeway_for_certificate_validity(site: RootedSite) -> None:
    site.gw_clock.now = NOW + 100
    site.rotate_signing()  # certificate valid from NOW + 100
    site.gw_clock.now = NOW + 100
    site.put("app/pw", b"new key")
    bundle = site.export()
    site.clock.now = NOW + 100 - 200  # agent clock 200 s behind the gateway's
    assert site.deliver(bundle).status == "applied"


def test_the_clock_alarm_names_a_state_once_when_it_is_entered() -> None:
    from relay.trust.clock import ClockAlarm

    alarm = ClockAlarm()
    floor, skew, ahead = NOW, 300, 30 * DAY
    seen = [
        alarm.event(judge_time(clock, floor, skew, ahead))
        for clock in (NOW, NOW - DAY, NOW - 2 * DAY, NOW, NOW + YEAR, NOW + YEAR, NOW - DAY)
    ]
    assert seen == [None, "clock.behind", None, None, "clock.ahead", None, "clock.behind"]
