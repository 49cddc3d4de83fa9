"""A gateway and an agent in one process, for delta-bundle scenarios (tests/test_delta_*.py):
the real stores (SQLCipher files), the real export, import and audit return, an injected clock.
Bundles and audit bundles are bytes the test delivers, loses or reorders as it likes."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from inner_agent.audit import AgentAudit, trusted_gateway
from inner_agent.importer import AgentImporter, Outcome
from inner_agent.store import AgentStore
from outer_gateway.audit import GatewayAudit
from outer_gateway.audit_import import AuditImporter
from outer_gateway.export import ExportedBundle, build_bundle
from outer_gateway.store import GatewayStore
from outer_gateway.versions import drop_stale_labels, version_rows
from relay.home import Home
from relay.paths import grant_matcher
from tests.conftest import make_pair

AGENT = "plant7"
Served = tuple[dict[str, tuple[int, bytes]], dict[str, dict[str, tuple[int, int | None]]]]


def template(root: Path) -> Path:
    """An enrolled, trusting pair made once with the real CLI (copy it per scenario)."""
    make_pair(root)
    return root


@dataclass
class Site:
    """One gateway and one agent; ``now`` advances one second per call of :meth:`tick`."""

    root: Path
    now: int
    gw: Home = field(init=False)
    ag: Home = field(init=False)

    def __post_init__(self) -> None:
        self.gw = Home.open(self.root / "gw", "gateway")
        self.ag = Home.open(self.root / "ag", "agent")
        self.store = GatewayStore.open(self.gw)
        self.agent_store = AgentStore.open(self.ag)
        self.importer = AgentImporter(self.ag, self.agent_store, self.clock, AgentAudit(self.ag))
        self.audit_importer = AuditImporter(
            self.gw, self.store, GatewayAudit(self.gw, self.store.engine), self.clock
        )

    @classmethod
    def copy_of(
        cls, template_root: Path, root: Path, now: int, store_url: str | None = None
    ) -> Site:
        """A copy of the template; with ``store_url`` the gateway's store is that database
        (PostgreSQL), where the agent is enrolled afresh."""
        shutil.copytree(template_root, root)
        if store_url is not None:
            Home.open(root / "gw", "gateway").config.set("gateway.store_url", store_url)
        site = cls(root, now)
        if store_url is not None:
            site.store.enroll(site.ag.identity, now)
        return site

    def close(self) -> None:
        self.store.close()
        self.agent_store.close()

    def clock(self) -> int:
        return self.now

    def tick(self) -> int:
        self.now += 1
        return self.now

    # -- the two streams ---------------------------------------------------------------------

    def export(self, full: bool = False) -> ExportedBundle:
        drop_stale_labels(self.store)  # as dispatch does before every export
        agent = self.store.agent(AGENT)
        return build_bundle(self.gw, self.store, agent, self.tick(), 10**7, full=full)

    def apply(self, data: bytes, name: str = "in.bundle") -> Outcome:
        self.tick()
        return self.importer.import_bytes(name, data)

    def audit_bundles(self) -> list[bytes]:
        gateway = trusted_gateway(self.ag)
        return [b.data for b in AgentAudit(self.ag).export_bundles(gateway, self.tick())]

    def return_audit(self, data: bytes) -> None:
        self.tick()
        outcome = self.audit_importer.import_bytes("audit.bundle", data)
        assert outcome.status in ("imported", "duplicate"), outcome

    # -- what each side holds ----------------------------------------------------------------

    def intended(self) -> Served:
        """What the gateway means the agent to serve now: granted live current versions and
        the labelled versions of granted paths (read without the export code)."""
        patterns = [p for _, p in self.store.grants(AGENT)]
        matcher = grant_matcher(patterns)
        if matcher is None:
            return {}, {}
        current = {
            path: (version, bytes(value))
            for path, version, value, _expires, deleted in self.store.all_rows()
            if not deleted and value is not None and matcher.fullmatch(path)
        }
        labels: dict[str, dict[str, tuple[int, int | None]]] = {}
        for path, label, version, _value, _exp, at, _overlap in version_rows(self.store, self.now):
            if matcher.fullmatch(path):
                labels.setdefault(path, {})[label] = (version, at)
        return current, labels

    def served(self) -> Served:
        """What the agent serves: current versions with values, and the labels it holds."""
        values = dict(self.agent_store.iter_values())
        current = {m.path: (m.version, values[m.path]) for m in self.agent_store.list_secrets()}
        return current, self.agent_store.labelled()

    def stream_state(self) -> tuple[object, ...]:
        """Everything a refused bundle must leave as it was."""
        return (
            self.served(),
            self.agent_store.change_marker(),
            self.agent_store.get_meta("policies"),
        )
