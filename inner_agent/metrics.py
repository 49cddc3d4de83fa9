"""Prometheus metrics of the agent service, on a private registry (``GET /metrics``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Snapshot:
    """Values computed at scrape time."""

    secrets: int
    expiring_24h: int
    seconds_since_fresh: float | None
    stale: bool
    live_tokens: int
    degraded: str | None = None  # why the intake is degraded (inner_agent.intake_health)


class _StateCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot()
        yield GaugeMetricFamily("relay_secrets", "Secrets held by this agent", value=s.secrets)
        yield GaugeMetricFamily(
            "relay_secrets_expiring_24h",
            "Secrets that expire within the next 24 hours",
            value=s.expiring_24h,
        )
        since = GaugeMetricFamily(
            "relay_seconds_since_fresh_bundle",
            "Seconds since the newest applied bundle was created (absent before the first)",
        )
        if s.seconds_since_fresh is not None:
            since.add_metric([], s.seconds_since_fresh)
        yield since
        yield GaugeMetricFamily(
            "relay_agent_stale", "1 when past agent.max_staleness", value=int(s.stale)
        )
        yield GaugeMetricFamily("relay_api_tokens", "Live API tokens", value=s.live_tokens)
        degraded = GaugeMetricFamily(
            "relay_agent_degraded",
            "1 when repeated rejections or failing inbox scans degrade the intake",
            labels=["reason"],
        )
        reason = (s.degraded or "").split(":", 1)[0]
        degraded.add_metric([reason], int(s.degraded is not None))
        yield degraded


class AgentMetrics:
    """Counters the service increments, plus gauges read from its state at scrape time."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # process-wide; less noise
        self.registry = CollectorRegistry()
        self.applied = Counter("relay_bundles_applied", "Bundles applied", registry=self.registry)
        self.rejected = Counter(
            "relay_bundles_rejected",
            "Bundles rejected, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "relay_bundles_duplicate", "Bundles skipped as already applied", registry=self.registry
        )
        self.scan_failures = Counter(
            "relay_inbox_scan_failures", "Inbox scans that raised", registry=self.registry
        )
        self.requests = Counter(
            "relay_api_requests", "API responses, by status", ["status"], registry=self.registry
        )
        self.registry.register(_StateCollector(snapshot))

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
