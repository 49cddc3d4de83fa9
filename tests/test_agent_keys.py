"""Agent key rotation through the return stream, and revoked agents (real stores, injected
clocks)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from outer_gateway.agent_keys import apply_rotation_requests, revoke_agent
from outer_gateway.export import agents_to_export
from relay.errors import UsageError
from relay.home import Home
from relay.trust.agent_rotation import REQUEST_TYPE
from tests.conftest import run_relay
from tests.trust_kit import DAY, NOW, RootedSite, make_rooted_site


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RootedSite]:
    monkeypatch.delenv("RELAY_PASSPHRASE", raising=False)
    s = make_rooted_site(tmp_path)
    s.put("app/pw", b"one")
    assert s.deliver(s.export()).status == "applied"
    yield s
    s.close()


def _rotate_agent(site: RootedSite) -> tuple[str, str]:
    from inner_agent.agent_keys import request_rotation

    old = site.ag_home.identity.key_id
    new = request_rotation(site.ag_home)
    outcome = site.return_stream()
    assert outcome.status == "imported", outcome.message
    return old, new


def test_rotation_request_moves_the_enrollment_and_the_agent_follows(site: RootedSite) -> None:
    _old, new = _rotate_agent(site)
    assert site.gw.agent("plant7").identity.key_id == new
    assert "agent.key_rotated" in site.gateway_audit_types()
    site.gw_clock.now = NOW + 60
    site.put("app/pw", b"two")
    bundle = site.export()
    outcome = site.deliver(bundle)
    assert outcome.status == "applied", outcome.message
    assert site.value("app/pw") == b"two"
    reopened = Home.open(site.ag_home.path, "agent")
    assert reopened.identity.key_id == new
    assert reopened.read_side_key("next") is None
    assert reopened.read_side_key("previous") is not None
    assert "key.rotated" in site.audit_types()
    # the return stream is now signed by the new key, and the gateway takes it
    assert site.return_stream().status == "imported"


def test_the_old_key_is_kept_until_its_bundles_expire(site: RootedSite) -> None:
    old_bundle = site.export()  # sealed to the old key (seq 2), not yet imported
    _rotate_agent(site)
    site.gw_clock.now = NOW + 60
    site.put("app/pw", b"two")
    assert site.deliver(site.export()).status == "applied"  # seq 3, to the new key
    late = site.deliver(old_bundle)
    assert (late.status, late.code) == ("rejected", "rollback")  # opened, judged: not a stranger
    site.clock.now = NOW + 60 + 8 * DAY  # past the newest bundle sealed to the old key
    gone = site.deliver(old_bundle)
    assert gone.code in ("expired", "cert_expired", "wrong_recipient")
    assert Home.open(site.ag_home.path, "agent").read_side_key("previous") is None


def test_a_replayed_rotation_request_is_refused(site: RootedSite) -> None:
    from inner_agent.audit import AgentAudit

    _old, new = _rotate_agent(site)
    request = next(r for r in AgentAudit(site.ag_home).records() if r.type == REQUEST_TYPE)
    current = site.gw.agent("plant7").identity
    with site.gw.engine.begin() as conn:
        results = apply_rotation_requests(conn, current, [request])
    assert [(r.refused, r.new_key_id) for r in results] == [("rotation_replayed", None)]
    assert site.gw.agent("plant7").identity.key_id == new


def test_a_second_rotation_before_the_first_lands_is_refused(site: RootedSite) -> None:
    from inner_agent.agent_keys import request_rotation

    request_rotation(site.ag_home)
    with pytest.raises(UsageError) as refused:
        request_rotation(site.ag_home)
    assert refused.value.code == "rotation_pending"


def test_a_revoked_agent_gets_nothing_and_its_stream_is_cut_off(site: RootedSite) -> None:
    from inner_agent.agent_keys import request_rotation

    before_cutoff = site.return_stream(created=NOW + 5)  # made before the revocation
    assert before_cutoff.status == "imported"
    from inner_agent.audit import AgentAudit, trusted_gateway

    request_rotation(site.ag_home)
    early = AgentAudit(site.ag_home).export_bundles(trusted_gateway(site.ag_home), NOW + 9)[0]
    assert revoke_agent(site.gw, "plant7", NOW + 10, NOW + 10)
    assert agents_to_export(site.gw, None) == []
    with pytest.raises(UsageError) as refused:
        site.export()
    assert refused.value.code == "agent_revoked"
    late = site.return_stream(created=NOW + 11)
    assert (late.status, late.code) == ("rejected", "agent_revoked")
    # a bundle made before the cut-off is still read, but its rotation request is refused
    assert site.gateway_import(early.data).status == "imported"
    assert "agent.key_rotation_refused" in site.gateway_audit_types()
    assert site.gw.agent("plant7").identity.key_id == site.ag_home.identity.key_id


def test_gateway_agents_is_a_group_that_still_lists(tmp_path: Path) -> None:
    gw, ag = tmp_path / "gw", tmp_path / "ag"
    run_relay("gateway", "init", "--home", str(gw), "--name", "hq")
    run_relay(
        "agent", "init", "--home", str(ag), "--name", "p1", "--request-out", str(tmp_path / "r")
    )
    run_relay("gateway", "enroll", "--home", str(gw), str(tmp_path / "r"))
    listed = run_relay("gateway", "agents", "--home", str(gw))
    assert listed.status == 0 and "p1" in listed.out
    revoked = run_relay("gateway", "agents", "revoke", "--home", str(gw), "p1")
    assert revoked.status == 0, revoked.err
    import json

    rows = json.loads(run_relay("gateway", "agents", "--home", str(gw), "--json").out)
    assert rows[0]["revoked"] is True
    run_relay("gateway", "grant", "--home", str(gw), "p1", "a/*")
    exported = run_relay("gateway", "export", "--home", str(gw), "--to", str(tmp_path / "o"))
    assert exported.status == 0 and "nothing to export" in exported.err
    named = run_relay(
        "gateway", "export", "--home", str(gw), "--to", str(tmp_path / "o"), "--agent", "p1"
    )
    assert named.status != 0 and "agent_revoked" in named.err
    unknown = run_relay("gateway", "agents", "revoke", "--home", str(gw), "nobody")
    assert unknown.status != 0 and "unknown_agent" in unknown.err
