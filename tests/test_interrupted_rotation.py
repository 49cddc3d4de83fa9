"""Rotations stopped half-way (a crash between two writes) complete on the next run and never
leave a site unable to receive."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inner_agent.agent_keys import request_rotation
from relay.home import Home
from tests.trust_kit import NOW, RootedSite, make_rooted_site


class Crash(Exception):
    """Stands for the process dying at this point."""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RootedSite]:
    monkeypatch.delenv("RELAY_PASSPHRASE", raising=False)
    s = make_rooted_site(tmp_path)
    s.put("app/pw", b"one")
    assert s.deliver(s.export()).status == "applied"
    yield s
    s.close()


def _crash(*_: object, **__: object) -> None:
    raise Crash


def test_gateway_rotation_cut_before_the_key_swap(
    site: RootedSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(Home, "replace_keys", _crash)
        with pytest.raises(Crash):
            site.rotate_signing()
    restarted = Home.open(site.gw_home.path, "gateway")  # the process starts again
    site.gw_home = restarted
    assert site.ring.cert.key_id != restarted.identity.key_id  # certified, not yet in use
    site.gw_clock.now = NOW + 60
    site.put("app/pw", b"two")
    assert site.deliver(site.export()).status == "applied"
    assert Home.open(site.gw_home.path, "gateway").identity.key_id == site.ring.cert.key_id
    assert site.value("app/pw") == b"two"


def test_agent_switch_cut_after_the_key_swap(
    site: RootedSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    request_rotation(site.ag_home)
    assert site.return_stream().status == "imported"
    site.gw_clock.now = NOW + 60
    site.put("app/pw", b"two")
    bundle = site.export()
    with monkeypatch.context() as patched:
        patched.setattr(Home, "remove_side_key", _crash)
        assert site.deliver(bundle).status == "applied"  # the switch stopped after the swap
    site.ag_home = Home.open(site.ag_home.path, "agent")
    site.gw_clock.now = NOW + 120
    site.put("app/pw", b"three")
    assert site.deliver(site.export()).status == "applied"
    assert site.value("app/pw") == b"three"
    assert site.ag_home.read_side_key("next") is None
    request_rotation(site.ag_home)  # not stuck in "rotation_pending"
