"""A gateway with a root and an agent that pinned it, in-process, on an injected clock.

Root keys are made in memory (no Argon2id per operation) so scenarios stay cheap; the CLI tests
(``test_gateway_keys.py``) cover the root key files themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inner_agent.audit import AgentAudit
from inner_agent.importer import AgentImporter, Outcome
from inner_agent.store import AgentStore
from inner_agent.trust_store import pin_root
from outer_gateway import keyring
from outer_gateway.audit_import import AuditOutcome
from outer_gateway.export import build_bundle
from outer_gateway.store import GatewayStore
from relay import crypto
from relay.home import Home
from relay.trust.chain import parse_root_identity
from relay.trust.root_file import RootKey

NOW = 1_800_000_000
DAY = 86400


@dataclass
class Clock:
    """A clock tests move by hand."""

    now: int = NOW

    def __call__(self) -> int:
        return self.now


@dataclass
class RootedSite:
    tmp: Path
    gw_home: Home
    gw: GatewayStore
    ag_home: Home
    ag: AgentStore
    clock: Clock
    roots: list[RootKey] = field(default_factory=list)
    gw_clock: Clock = field(default_factory=Clock)

    @property
    def root(self) -> RootKey:
        return self.roots[-1]

    @property
    def ring(self) -> keyring.Keyring:
        ring = keyring.load(self.gw_home)
        assert ring is not None
        return ring

    def importer(self) -> AgentImporter:
        return AgentImporter(self.ag_home, self.ag, self.clock, AgentAudit(self.ag_home))

    def export(self, valid_for: int = 7 * DAY) -> bytes:
        agent = self.gw.agent("plant7")
        return build_bundle(self.gw_home, self.gw, agent, self.gw_clock(), valid_for).data

    def deliver(self, data: bytes, name: str = "b.bundle") -> Outcome:
        return self.importer().import_bytes(name, data)

    def rotate_signing(self) -> str:
        return keyring.rotate_signing(self.gw_home, self.ring, self.root, self.gw_clock(), 90 * DAY)

    def rotate_root(self) -> None:
        new = RootKey("hq", self.root.version + 1, crypto.generate_keypair())
        keyring.rotate_root(self.gw_home, self.ring, self.root, new, self.gw_clock())
        self.roots.append(new)

    def put(self, path: str, value: bytes) -> None:
        self.gw.put_secret(path, value, None, self.gw_clock())

    def value(self, path: str) -> bytes | None:
        secret = self.ag.get_secret(path)
        return None if secret is None else secret.value

    def audit_types(self) -> list[str]:
        return [r.type for r in AgentAudit(self.ag_home).records()]

    def return_stream(self, created: int | None = None) -> AuditOutcome:
        """The agent's audit export, imported by the gateway."""
        from inner_agent.audit import trusted_gateway

        at = self.clock() if created is None else created
        exported = AgentAudit(self.ag_home).export_bundles(trusted_gateway(self.ag_home), at)
        outcomes = [self.gateway_import(b.data) for b in exported]
        return next((o for o in outcomes if o.status != "imported"), outcomes[-1])

    def gateway_import(self, data: bytes) -> AuditOutcome:
        from outer_gateway.audit import GatewayAudit
        from outer_gateway.audit_import import AuditImporter

        audit = GatewayAudit(self.gw_home, self.gw.engine)
        return AuditImporter(self.gw_home, self.gw, audit, self.gw_clock).import_bytes("a", data)

    def gateway_audit_types(self) -> list[str]:
        from outer_gateway.audit import GatewayAudit

        return [r.type for r in GatewayAudit(self.gw_home, self.gw.engine).own_records()]

    def close(self) -> None:
        self.gw.close()
        self.ag.close()


def pinned_stores(tmp: Path, now: int) -> tuple[Home, GatewayStore, Home, AgentStore]:
    """Gateway ``gw`` and agent ``plant7`` in ``tmp``, their stores open: the agent enrolled,
    granted ``app/**`` and trusting the gateway's key as pinned (no root)."""
    gw_home = Home.create(tmp / "gw", "gateway", "gw")
    ag_home = Home.create(tmp / "ag", "agent", "plant7")
    gw, ag = GatewayStore.open(gw_home), AgentStore.open(ag_home)
    gw.enroll(ag_home.identity, now)
    gw.grant("plant7", "app/**")
    ag.trust(gw_home.identity, now)
    return gw_home, gw, ag_home, ag


def make_rooted_site(tmp: Path) -> RootedSite:
    """Gateway ``hq`` with root 1, agent ``plant7`` enrolled, granted ``app/**``, root pinned."""
    Home.create(tmp / "gw", "gateway", "hq")
    gw_home = Home.open(tmp / "gw", "gateway")
    Home.create(tmp / "ag", "agent", "plant7")
    ag_home = Home.open(tmp / "ag", "agent")
    gw, ag = GatewayStore.open(gw_home), AgentStore.open(ag_home)
    gw.enroll(ag_home.identity, NOW)
    gw.grant("plant7", "app/**")
    root = RootKey("hq", 1, crypto.generate_keypair())
    ring = keyring.create(gw_home, root, NOW, 90 * DAY)
    pinned, cert, signer = parse_root_identity(ring.root_document())
    pin_root(ag.engine, pinned, cert, signer, NOW, replace=False)
    return RootedSite(tmp, gw_home, gw, ag_home, ag, Clock(), [root])
