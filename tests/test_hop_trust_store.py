"""The hop's root trust in-process (real SQLCipher stores, injected clock): pinning rules, the
root deciding over a pinned key, and a revocation remembered from one bundle refusing another."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from outer_gateway import keyring
from relay import crypto
from relay.bundle.limits import Limits
from relay.bundle.receive import receive_sealed
from relay.bundle.verify import Trust
from relay.errors import BundleRejected, UsageError
from relay.home import Home
from relay.hop.store import HopStore
from relay.hop.trust_store import certified_senders, pin_root, root_states
from relay.identity import identity_of
from relay.trust.chain import parse_root_identity
from relay.trust.documents import Cert, sign_cert, sign_root
from relay.trust.root_file import RootKey
from tests.trust_kit import DAY, NOW, RootedSite, make_rooted_site

KINDS = ("secrets", "audit")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RootedSite]:
    monkeypatch.delenv("RELAY_PASSPHRASE", raising=False)
    s = make_rooted_site(tmp_path)
    s.put("app/pw", b"one")
    yield s
    s.close()


@pytest.fixture
def hop(tmp_path: Path) -> Iterator[HopStore]:
    Home.create(tmp_path / "hop", "hop", "hop")
    store = HopStore.open(Home.open(tmp_path / "hop", "hop"))
    yield store
    store.close()


def _pin(hop: HopStore, ring: keyring.Keyring, replace: bool = False) -> bool:
    root, cert, _signer = parse_root_identity(ring.root_document())
    return pin_root(hop.engine, root, cert, NOW, replace)


def _forward(hop: HopStore, data: bytes, now: int = NOW) -> None:
    """What the hop does with one bundle: judge it against its roots, remember the chain."""
    trust = Trust(None, hop.senders(), None, 0, root_states(hop.engine))
    bundle = receive_sealed(data, trust, now, Limits(), KINDS)
    header = bundle.envelope.header
    hop.mark(
        bundle.bundle_id, "f", len(data), header.kind, header.sender, header.seq, now, bundle.chain
    )


def test_pinning_rules(site: RootedSite, hop: HopStore) -> None:
    plain = identity_of("gateway", "hq", site.gw_home.secrets.keys)
    assert hop.pin(plain)  # an old-style pin of the same gateway's key
    assert _pin(hop, site.ring)
    assert hop.senders() == {}  # the root decides from now on
    assert not _pin(hop, site.ring)  # the enrollment's file again: nothing changes
    stranger = crypto.generate_keypair()  # another root for "hq" (a re-made gateway, a thief)
    unsigned = Cert("hq", "signing", 1, plain.sign_public, plain.box_public, NOW, NOW + DAY, 1, b"")
    other = keyring.Keyring(
        "hq", [sign_root("hq", 1, stranger, None)], 1, sign_cert(stranger, unsigned)
    )
    with pytest.raises(UsageError) as refused:
        _pin(hop, other)
    assert refused.value.code == "already_trusted"
    assert root_states(hop.engine)["hq"].key == site.ring.root.key
    assert _pin(hop, other, replace=True)  # the visit after a stolen root
    assert root_states(hop.engine)["hq"].key == stranger.sign_public


def test_the_root_decides_not_a_pinned_key(site: RootedSite, hop: HopStore) -> None:
    _pin(hop, site.ring)
    data = site.export()
    _forward(hop, data)
    assert set(certified_senders(hop.engine)) == {site.gw_home.identity.key_id}
    # the same gateway's key pinned as a plain sender does not bypass a root it does not chain to
    stranger = RootKey("hq", 1, crypto.generate_keypair())
    state = root_states(hop.engine)["hq"]
    alien = state.__class__("hq", 1, stranger.keys.sign_public, frozenset({state.key}), {})
    senders = {
        site.gw_home.identity.key_id: identity_of("gateway", "hq", site.gw_home.secrets.keys)
    }
    with pytest.raises(BundleRejected) as refused:
        receive_sealed(data, Trust(None, senders, None, 0, {"hq": alien}), NOW, Limits(), KINDS)
    assert refused.value.code == "cert_invalid"


def test_a_revocation_learnt_from_one_bundle_refuses_another(
    site: RootedSite, hop: HopStore
) -> None:
    _pin(hop, site.ring)
    stolen_key = site.gw_home.identity.key_id
    early = site.export()  # signed by the key about to be stolen, not yet forwarded
    site.gw_clock.now = NOW + 60
    site.rotate_signing()
    site.gw_home = Home.open(site.gw_home.path, "gateway")
    keyring.revoke(site.gw_home, site.ring, site.root, stolen_key)
    _forward(hop, site.export(), NOW + 60)  # carries the revocation
    assert stolen_key in root_states(hop.engine)["hq"].revoked
    with pytest.raises(BundleRejected) as refused:
        _forward(hop, early, NOW + 60)
    assert refused.value.code == "key_revoked"
