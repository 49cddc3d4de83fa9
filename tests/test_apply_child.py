"""The service applies each received bundle in a child process (inner_agent/apply_child.py,
ADR 0022): the child's outcome and audit record are those of the same import in-process, the
outcome crosses the pipe unchanged, and a child that exits without one is judged by the store."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from inner_agent.apply_child import ChildImporter, decode, encode
from inner_agent.audit import AgentAudit
from inner_agent.importer import AgentImporter, Outcome
from inner_agent.store import AgentStore, ApplyResult
from inner_agent.versions import Activation
from outer_gateway.export import build_bundle
from outer_gateway.store import GatewayStore
from relay import crypto
from relay.errors import MALFORMED
from relay.home import Home, Secrets
from tests.trust_kit import pinned_stores

VALID_FOR = 7 * 24 * 3600


@dataclass
class Site:
    root: Path
    gw_home: Home
    gw: GatewayStore
    ag_home: Home
    ag: AgentStore

    def export(self, values: dict[str, bytes]) -> tuple[str, bytes]:
        now = int(time.time())  # the child judges bundles by the real clock
        self.gw.import_secrets(values, None, now)
        bundle = build_bundle(self.gw_home, self.gw, self.gw.agent("plant7"), now, VALID_FOR)
        return bundle.name, bundle.data

    def importer(self) -> AgentImporter:
        return AgentImporter(self.ag_home, self.ag, lambda: int(time.time()))

    def twin(self) -> tuple[Home, AgentStore]:
        """A copy of the agent home as it is now (same keys, same store)."""
        self.ag.close()
        shutil.copytree(self.ag_home.path, self.root / "twin")
        self.ag = AgentStore.open(self.ag_home)
        home = Home.open(self.root / "twin", "agent")
        return home, AgentStore.open(home)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.delenv("RELAY_PASSPHRASE", raising=False)
    monkeypatch.delenv("RELAY_CRASH_AT", raising=False)
    s = _make_site(tmp_path)
    yield s
    s.gw.close()
    s.ag.close()


def _make_site(tmp_path: Path) -> Site:
    s = Site(tmp_path, *pinned_stores(tmp_path, int(time.time())))
    name, data = s.export({f"app/s{i}": f"v{i}".encode() for i in range(20)})
    assert s.importer().import_bytes(name, data).status == "applied"
    return s


def _last_record(home: Home) -> tuple[str, dict[str, object]]:
    record = AgentAudit(home).records()[-1]
    return record.type, dict(record.fields)


def test_an_outcome_crosses_the_pipe_unchanged() -> None:
    activated = (Activation("app/a", 3, 2, 1_800_000_000), Activation("app/b", 1, None, 7))
    applied = Outcome(
        "x.bundle", "applied", None, "", 9, ApplyResult(9, 4, 1, 15, 12, activated), None, "h", True
    )
    rejected = Outcome("y.bundle", "rejected", MALFORMED, "bad", quarantined="/q/y")
    for outcome in (applied, rejected):
        for switched in (False, True):
            assert decode(encode(outcome, switched)) == (outcome, switched)


def test_a_home_takes_keys_already_unlocked_and_rereads_switched_ones(site: Site) -> None:
    opened = Home.open(site.ag_home.path, "agent")
    opened.use_secrets(site.ag_home.secrets)
    assert opened.secrets == site.ag_home.secrets
    stranger = Secrets(crypto.generate_keypair(), crypto.random_bytes(32))
    with pytest.raises(Exception, match="inconsistent"):
        opened.use_secrets(stranger)
    site.ag_home.replace_keys(crypto.generate_keypair())  # as a child's key switch does
    assert opened.identity != site.ag_home.identity
    opened.reload_keys()
    assert opened.identity == site.ag_home.identity
    assert opened.secrets == site.ag_home.secrets


def test_what_needs_no_decryption_is_judged_in_the_service_as_the_import_would(
    site: Site,
) -> None:
    name, data = site.export({"app/s1": b"changed"})
    importer = site.importer()
    assert importer.prejudge(name, data, listed=True) is None  # new: for the apply child
    forged = data[:-1] + bytes([data[-1] ^ 1])
    refused = importer.prejudge("forged.bundle", forged, listed=True)
    assert importer.import_bytes(name, data, listed=True).status == "applied"
    duplicate = importer.prejudge(name, data, listed=True)
    assert duplicate is not None and duplicate.status == "duplicate"
    assert duplicate == importer.import_bytes(name, data, listed=True)
    assert refused is not None and refused.status == "rejected"
    again = importer.import_bytes("forged.bundle", forged, listed=True)
    assert (refused.code, refused.message) == (again.code, again.message)
    assert refused.quarantined is not None and Path(refused.quarantined).read_bytes() == forged


def test_a_child_lost_after_its_commit_counts_as_applied(site: Site) -> None:
    name, data = site.export({"app/s1": b"changed"})
    applied = site.importer().import_bytes(name, data)  # committed; the reply never came
    lost = ChildImporter(site.importer())._lost(name, data, 1)
    assert (lost.status, lost.bundle_id, lost.recorded) == ("applied", applied.bundle_id, True)
    assert lost.audit_fields() == {"file": name, "bundle_hash": applied.bundle_id}


def test_a_child_lost_before_its_commit_is_a_quarantined_malformed_file(site: Site) -> None:
    name, data = site.export({"app/s1": b"changed"})
    lost = ChildImporter(site.importer())._lost(name, data, 1)
    assert (lost.status, lost.code) == ("rejected", MALFORMED)
    assert lost.quarantined is not None
    assert Path(lost.quarantined).read_bytes() == data
    secret = site.ag.get_secret("app/s1")
    assert secret is not None and secret.value == b"v1"  # nothing was applied


@pytest.mark.slow
def test_the_child_applies_exactly_what_the_import_in_process_applies(site: Site) -> None:
    name, data = site.export({"app/s1": b"changed", "app/new": b"new"})
    twin_home, twin = site.twin()
    try:
        here = AgentImporter(twin_home, twin, lambda: int(time.time()))
        expected = here.import_bytes(name, data, listed=True)
        outcome = ChildImporter(site.importer())(name, data)
        assert outcome.status == "applied"
        assert outcome == expected  # seq, counts, bundle id, recorded with the apply
        assert (
            _last_record(site.ag_home)
            == _last_record(twin_home)
            == (
                "bundle.applied",
                outcome.audit_fields(),
            )
        )
        secret = site.ag.get_secret("app/s1")  # read by this (the parent) process
        assert secret is not None and secret.value == b"changed"
        # the same bytes again: a duplicate, judged the same way on both sides
        assert ChildImporter(site.importer())(name, data) == here.import_bytes(
            name, data, listed=True
        )
        forged = data[:-1] + bytes([data[-1] ^ 1])
        refused = ChildImporter(site.importer())("forged.bundle", forged)
        assert refused.status == "rejected"
        assert refused.code == here.import_bytes("forged.bundle", forged, listed=True).code
        assert refused.quarantined is not None and Path(refused.quarantined).exists()
    finally:
        twin.close()


@pytest.mark.slow
def test_a_key_switch_made_by_the_child_is_taken_up_by_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inner_agent.agent_keys import request_rotation
    from tests.trust_kit import NOW, make_rooted_site

    monkeypatch.delenv("RELAY_PASSPHRASE", raising=False)
    monkeypatch.delenv("RELAY_CRASH_AT", raising=False)
    site = make_rooted_site(tmp_path)
    try:
        site.put("app/pw", b"one")
        assert site.deliver(site.export()).status == "applied"
        new = request_rotation(site.ag_home)
        assert site.return_stream().status == "imported"
        site.gw_clock.now = NOW + 60
        site.put("app/pw", b"two")
        outcome = ChildImporter(site.importer())("next.bundle", site.export())
        assert outcome.status == "applied", outcome.message
        assert site.ag_home.identity.key_id == new  # the service's own home follows
        assert site.ag_home.secrets.keys.sign_public == site.ag_home.identity.sign_public
        assert "key.rotated" in site.audit_types()
        assert site.value("app/pw") == b"two"
    finally:
        site.close()


@pytest.mark.slow
def test_the_child_takes_the_unlocked_keys_of_a_passphrase_protected_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RELAY_CRASH_AT", raising=False)
    monkeypatch.setenv("RELAY_PASSPHRASE", "correct horse")
    site = _make_site(tmp_path)  # keys wrapped with Argon2id
    try:
        assert site.ag_home.protection == "argon2id"
        name, data = site.export({"app/s1": b"changed"})
        monkeypatch.delenv("RELAY_PASSPHRASE")  # the child could not unwrap them itself
        outcome = ChildImporter(site.importer())(name, data)
        assert outcome.status == "applied", outcome.message
    finally:
        site.gw.close()
        site.ag.close()
