"""After a gateway signing-key rotation, the return stream the agent still sealed to the old key
is opened for ``keys.retired_open_for`` (audited as such), then refused as ``wrong_recipient``;
a revoked key opens nothing (real stores, injected clocks)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inner_agent.audit import AgentAudit, trusted_gateway
from outer_gateway import retired_keys
from outer_gateway.audit import GatewayAudit
from tests.trust_kit import DAY, NOW, RootedSite, make_rooted_site


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RootedSite]:
    monkeypatch.delenv("RELAY_PASSPHRASE", raising=False)
    s = make_rooted_site(tmp_path)
    s.gw_home.config.set("keys.retired_open_for", "2d")
    s.put("app/pw", b"one")
    assert s.deliver(s.export()).status == "applied"
    yield s
    s.close()


def _sealed_to_the_old_key(site: RootedSite) -> tuple[str, bytes]:
    """Rotate the gateway's signing key; the agent (no new bundle yet) seals to the old one."""
    old = site.gw_home.identity.key_id
    site.gw_clock.now = NOW + 100
    site.rotate_signing()
    (bundle,) = AgentAudit(site.ag_home).export_bundles(trusted_gateway(site.ag_home), NOW + 200)
    assert old != site.gw_home.identity.key_id
    return old, bundle.data


def _imported_fields(site: RootedSite) -> list[dict[str, object]]:
    records = GatewayAudit(site.gw_home, site.gw.engine).own_records()
    return [dict(r.fields) for r in records if r.type == "audit.imported"]


def test_a_bundle_sealed_to_the_retired_key_is_opened_within_the_window(
    site: RootedSite,
) -> None:
    old, data = _sealed_to_the_old_key(site)
    site.gw_clock.now = NOW + 100 + 2 * DAY  # the last second of the window
    outcome = site.gateway_import(data)
    assert outcome.status == "imported", outcome.message
    assert outcome.new > 0 and outcome.sealed_to_retired == old
    assert _imported_fields(site)[-1]["retired_key_id"] == old
    assert set(retired_keys.open_keys(site.gw_home, site.ring, site.gw_clock())) == {old}


def test_after_the_window_it_is_wrong_recipient_and_the_key_is_gone(site: RootedSite) -> None:
    old, data = _sealed_to_the_old_key(site)
    site.gw_clock.now = NOW + 100 + 2 * DAY + 1  # one second past the window
    outcome = site.gateway_import(data)
    assert (outcome.status, outcome.code) == ("rejected", "wrong_recipient")
    assert site.gw_home.read_side_key(retired_keys.label(old)) is None


def test_a_revoked_retired_key_opens_nothing(site: RootedSite) -> None:
    from outer_gateway import keyring

    old, data = _sealed_to_the_old_key(site)
    keyring.revoke(site.gw_home, site.ring, site.root, old)
    assert site.gw_home.read_side_key(retired_keys.label(old)) is None
    outcome = site.gateway_import(data)
    assert (outcome.status, outcome.code) == ("rejected", "wrong_recipient")


def test_a_listed_folder_is_judged_in_full_not_skipped_as_elsewhere(
    site: RootedSite, tmp_path: Path
) -> None:
    """The head names the retired key: the folder import must not skip it as another
    gateway's bundle before trying the retired key."""
    from outer_gateway.audit_import import AuditImporter

    old, data = _sealed_to_the_old_key(site)
    folder = tmp_path / "back"
    folder.mkdir()
    (folder / "plant7-to-hq.audit.0000000001.bundle").write_bytes(data)
    audit = GatewayAudit(site.gw_home, site.gw.engine)
    importer = AuditImporter(site.gw_home, site.gw, audit, site.gw_clock)
    (outcome,) = importer.import_location(str(folder))
    assert (outcome.status, outcome.sealed_to_retired) == ("imported", old)
    (again,) = importer.import_location(str(folder))  # a verified head: a duplicate now
    assert again.status == "duplicate"
