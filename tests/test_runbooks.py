"""Each compromise runbook of ``docs/runbooks.md``, played out (real stores, injected clocks)."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from inner_agent.store import AgentStore
from inner_agent.trust_store import pin_root
from outer_gateway import keyring
from outer_gateway.agent_keys import revoke_agent
from relay import crypto
from relay.bundle.payload import SecretsPayload
from relay.bundle.seal import seal_bundle
from relay.home import Home
from relay.identity import identity_of
from relay.trust.chain import parse_root_identity
from relay.trust.documents import SIGNING_ROLE, Cert, TrustSection, sign_cert, sign_root
from tests.trust_kit import DAY, NOW, RootedSite, make_rooted_site


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RootedSite]:
    monkeypatch.delenv("RELAY_PASSPHRASE", raising=False)
    s = make_rooted_site(tmp_path)
    s.put("app/pw", b"genuine")
    assert s.deliver(s.export()).status == "applied"
    yield s
    s.close()


def _forge(site: RootedSite, keys: crypto.KeyPair, trust: dict[str, object], seq: int) -> bytes:
    """What a thief holding ``keys`` can make: any seq, any secrets, a chain it holds."""
    evil = SecretsPayload([("app/pw", 99, base64.b64encode(b"evil").decode(), None)])
    return seal_bundle(
        kind="secrets",
        sender=identity_of("gateway", "hq", keys),
        keys=keys,
        recipient=site.ag_home.identity,
        seq=seq,
        created=NOW + 100,
        expires=NOW + 7 * DAY,
        plaintext=evil.encode(),
        trust=trust,
    )


def test_signing_key_stolen_revoke_and_rotate(site: RootedSite) -> None:
    stolen_keys, stolen_trust = site.gw_home.secrets.keys, site.ring.section(NOW)
    stolen_id = site.gw_home.identity.key_id
    # runbook: rotate, then revoke the stolen key; the next bundle carries both
    site.rotate_signing()
    keyring.revoke(site.gw_home, site.ring, site.root, stolen_id)
    site.gw_clock.now = NOW + 60
    site.put("app/pw", b"after rotation")
    assert site.deliver(site.export()).status == "applied"
    forged = site.deliver(_forge(site, stolen_keys, stolen_trust, 10**6))
    assert (forged.status, forged.code) == ("rejected", "key_revoked")
    assert site.value("app/pw") == b"after rotation"


def test_root_stolen_needs_a_visit(site: RootedSite) -> None:
    stolen_root = site.root.keys
    thief = crypto.generate_keypair()
    evil_root_key = crypto.generate_keypair()
    evil_root = sign_root("hq", 2, evil_root_key, stolen_root)
    evil_cert = sign_cert(
        evil_root_key,
        Cert(
            "hq", SIGNING_ROLE, 50, thief.sign_public, thief.box_public, NOW, NOW + 90 * DAY, 2, b""
        ),
    )
    evil_trust = TrustSection((evil_root,), evil_cert, ()).to_json()
    # why a visit: with the root, a thief signs a successor the agents follow in band
    taken = site.deliver(_forge(site, thief, evil_trust, 7))
    assert taken.status == "applied"
    # runbook: a new root at the gateway, and on site `relay agent trust --replace`
    site.rotate_root()
    pinned, cert, signer = parse_root_identity(site.ring.root_document())
    pin_root(site.ag.engine, pinned, cert, signer, NOW + 200, replace=True)
    site.gw_clock.now = NOW + 300
    site.put("app/pw", b"recovered")
    assert site.deliver(site.export()).status == "applied"
    assert site.value("app/pw") == b"recovered"
    again = site.deliver(_forge(site, thief, evil_trust, 10**6))
    assert (again.status, again.code) == ("rejected", "cert_invalid")
    old_chain = TrustSection(
        (),
        sign_cert(
            stolen_root,
            Cert(
                "hq", SIGNING_ROLE, 60, thief.sign_public, thief.box_public, NOW, NOW + DAY, 1, b""
            ),
        ),
        (),
    ).to_json()
    older = site.deliver(_forge(site, thief, old_chain, 10**6 + 1))
    assert (older.status, older.code) == ("rejected", "root_rollback")


def test_agent_key_stolen_revoke_and_reenroll(site: RootedSite) -> None:
    from inner_agent.audit import AgentAudit, trusted_gateway

    assert revoke_agent(site.gw, "plant7", NOW + 10, NOW + 10)
    # the thief's return stream, made after the cut-off, is refused
    stolen = AgentAudit(site.ag_home).export_bundles(trusted_gateway(site.ag_home), NOW + 20)[0]
    refused = site.gateway_import(stolen.data)
    assert (refused.status, refused.code) == ("rejected", "agent_revoked")
    # re-enrollment: a new agent home, enrolled under a new name, granted again
    Home.create(site.tmp / "ag2", "agent", "plant7b")
    fresh_home = Home.open(site.tmp / "ag2", "agent")
    fresh = AgentStore.open(fresh_home)
    site.gw.enroll(fresh_home.identity, NOW + 30)
    site.gw.grant("plant7b", "app/**")
    pinned, cert, signer = parse_root_identity(site.ring.root_document())
    pin_root(fresh.engine, pinned, cert, signer, NOW + 30, replace=False)
    from inner_agent.importer import AgentImporter
    from outer_gateway.export import build_bundle

    site.gw_clock.now = NOW + 40
    data = build_bundle(site.gw_home, site.gw, site.gw.agent("plant7b"), NOW + 40, DAY).data
    outcome = AgentImporter(fresh_home, fresh, site.clock).import_bytes("b", data)
    assert outcome.status == "applied"
    fresh.close()


def test_store_copied_without_keys_is_unreadable(site: RootedSite) -> None:
    from relay.errors import UsageError

    copy = site.tmp / "copied" / "store.db"
    copy.parent.mkdir()
    shutil.copy(site.ag_home.store_path, copy)
    assert b"genuine" not in copy.read_bytes()
    from relay.db import sqlcipher_engine

    with pytest.raises(UsageError) as refused:
        sqlcipher_engine(copy, crypto.random_bytes(32))  # any key but the home's
    assert refused.value.code == "bad_store"
