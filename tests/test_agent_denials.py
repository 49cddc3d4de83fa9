"""Unauthenticated denials are aggregated (a count per interval plus a sample), so a flood of
requests without a token cannot grow the audit log without bound."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from inner_agent.denials import SUMMARY_TYPE, DenialAggregator
from tests.agent_daemon import start_daemon
from tests.conftest import run_relay


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def aggregator() -> tuple[DenialAggregator, list[tuple[str, dict[str, Any]]], Clock]:
    recorded: list[tuple[str, dict[str, Any]]] = []
    clock = Clock()
    agg = DenialAggregator(lambda t, **f: recorded.append((t, f)), clock=clock, interval=60)
    return agg, recorded, clock


def test_a_flood_in_one_interval_is_one_sample_then_one_count() -> None:
    agg, recorded, clock = aggregator()
    for i in range(1000):
        agg.note("secret.denied", "unauthorized", app=None, path=f"db/p{i}")
    assert recorded == [("secret.denied", {"reason": "unauthorized", "app": None, "path": "db/p0"})]
    agg.flush()  # the interval is not over: nothing yet
    assert len(recorded) == 1
    clock.now += 60
    agg.flush()
    summary = {"denied_type": "secret.denied", "reason": "unauthorized", "count": 999}
    assert recorded[1] == (SUMMARY_TYPE, {**summary, "interval_s": 60})
    agg.flush(force=True)
    assert len(recorded) == 2  # counted once


def test_the_next_interval_starts_with_a_new_sample_and_reports_the_last_count() -> None:
    agg, recorded, clock = aggregator()
    for _ in range(3):
        agg.note("token.denied", "invalid_client", client_id="x")
    clock.now += 61
    agg.note("token.denied", "invalid_client", client_id="y")
    assert [t for t, _ in recorded] == ["token.denied", SUMMARY_TYPE, "token.denied"]
    assert recorded[1][1]["count"] == 2
    assert recorded[2][1]["client_id"] == "y"


def test_each_kind_of_denial_has_its_own_sample() -> None:
    agg, recorded, _ = aggregator()
    agg.note("secret.denied", "unauthorized", path="a")
    agg.note("secret.denied", "uid_not_allowed", uid=7)
    agg.note("token.denied", "invalid_client", client_id="c")
    agg.note("secret.denied", "unauthorized", path="b")
    assert [(t, f["reason"]) for t, f in recorded] == [
        ("secret.denied", "unauthorized"),
        ("secret.denied", "uid_not_allowed"),
        ("token.denied", "invalid_client"),
    ]
    agg.flush(force=True)
    assert recorded[-1][1] == {
        "denied_type": "secret.denied",
        "reason": "unauthorized",
        "count": 1,
        "interval_s": 60,
    }


@pytest.mark.slow
def test_a_flood_of_unauthenticated_requests_adds_a_few_audit_records(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, apps={"web": ["db/web/*"]})
    try:
        with httpx.Client(base_url=daemon.url, timeout=10) as client:
            for i in range(300):
                answer = client.get(f"/v1/secrets/db/web/p{i}")
                assert answer.status_code == 401
            token = daemon.token("web")  # an authenticated app is still served
            assert (
                client.get(
                    "/v1/secrets/db/web/none", headers={"Authorization": f"Bearer {token}"}
                ).status_code
                == 404
            )
    finally:
        daemon.stop()
    listed = run_relay("agent", "audit", "--home", str(daemon.pair.ag), "--json")
    records = [json.loads(line) for line in listed.out.splitlines()]
    unauthorized = [
        r
        for r in records
        if r["type"] == "secret.denied" and r["fields"]["reason"] == "unauthorized"
    ]
    assert unauthorized[0]["fields"]["path"] == "db/web/p0"  # a sample, recorded in full
    summaries = [r["fields"] for r in records if r["type"] == SUMMARY_TYPE]
    assert {(s["denied_type"], s["reason"], s["interval_s"]) for s in summaries} == {
        ("secret.denied", "unauthorized", 60)
    }
    # one sample and one count per 60 s interval (two if the flood crossed an interval's end)
    assert 1 <= len(summaries) <= len(unauthorized) <= 2
    assert len(unauthorized) + sum(s["count"] for s in summaries) == 300
    assert len(records) < 20  # not one record per request
    # the app's own denial is not aggregated: it is accountable
    assert {"app": "web", "path": "db/web/none", "reason": "not_found"} in [
        r["fields"] for r in records if r["type"] == "secret.denied"
    ]
