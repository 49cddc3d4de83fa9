"""A hop trusts a gateway by its root, as the agent does (issue 13): an SFTP + hop site keeps
forwarding across a signing-key rotation, a revocation and a root rotation with the identity
file it was given once, and refuses a bundle signed by the revoked key. Real sshd, real CLI."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.hop.trust_store import certified_senders, root_states
from tests.conftest import Result, run_relay
from tests.sshd_fixture import SshServer, running_sshd

pytestmark = pytest.mark.slow  # a real sshd


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    with running_sshd(tmp_path / "sshd") as server:
        yield server


def _ok(result: Result) -> Result:
    assert result.status == 0, result.err
    return result


class Site:
    """Gateway → SFTP (down/) → hop → level-3 folder → agent, enrolled once."""

    def __init__(self, tmp: Path, sshd: SshServer) -> None:
        self.tmp, self.sshd = tmp, sshd
        self.gw, self.ag, self.hop = tmp / "gw", tmp / "ag", tmp / "hop"
        self.level3 = tmp / "level3"
        pass_file = tmp / "root.pass"
        pass_file.write_text("root passphrase of the hop site\n")
        self.env = {"RELAY_ROOT_PASSPHRASE_FILE": str(pass_file)}
        self.ssh = [
            "--identity-file",
            str(sshd.identity_file),
            "--known-hosts",
            str(sshd.known_hosts),
        ]

    def gateway(self, *args: str, home: Path | None = None) -> Result:
        where = str(home or self.gw)
        return _ok(run_relay("gateway", *args, "--home", where, env=self.env))

    def agent(self, *args: str) -> Result:
        return _ok(run_relay("agent", *args, "--home", str(self.ag)))

    def run_hop(self, down: Path) -> Result:
        """One pass, always with the identity file of the enrollment (never re-trusted)."""
        return run_relay(
            "hop",
            "--home",
            str(self.hop),
            "--from",
            self.sshd.url(down),
            "--to",
            str(self.level3),
            "--trust",
            str(self.tmp / "hq.identity"),
            "--delete-after-forward",
            *self.ssh,
        )

    def deliver(self, value: bytes) -> None:
        down = self.sshd.data_dir / "down"
        _ok(
            run_relay(
                "gateway", "secret", "put", "--home", str(self.gw), "app/pw", "-", stdin=value
            )
        )
        self.gateway("export", "--to", self.sshd.url(down), *self.ssh)
        _ok(self.run_hop(down))
        outcomes = json.loads(self.agent("import", "--json", str(self.level3)).out)
        assert [o["status"] for o in outcomes] == ["applied"], outcomes
        assert self.agent("get", "app/pw").stdout == value + b"\n"
        shutil.rmtree(self.level3)


def _enroll_agent(site: Site) -> None:
    """plant7: initialised, enrolled and granted ``app/*``."""
    request = site.tmp / "plant7.request"
    _ok(
        run_relay(
            "agent", "init", "--home", str(site.ag), "--name", "plant7",
            "--request-out", str(request),
        )
    )  # fmt: skip
    site.gateway("enroll", str(request))
    site.gateway("grant", "plant7", "app/*")


def _enroll(site: Site) -> None:
    tmp = site.tmp
    site.gateway("init", "--name", "hq")
    site.gateway("root", "init", "--root-key", str(tmp / "vault" / "root1.key"))
    _enroll_agent(site)
    site.gateway("identity", "--out", str(tmp / "hq.identity"))
    site.agent("trust", str(tmp / "hq.identity"))
    (site.sshd.data_dir / "down").mkdir()


def _active_key(site: Site) -> str:
    keys = json.loads(site.gateway("key", "list", "--json").out)
    return str(next(k["key_id"] for k in keys if (k["role"], k["state"]) == ("signing", "active")))


def _hop_state(site: Site) -> tuple[int, dict[str, int], set[str]]:
    from relay.home import Home
    from relay.hop.store import HopStore

    store = HopStore.open(Home.open(site.hop, "hop"))
    try:
        state = root_states(store.engine)["hq"]
        return state.version, dict(state.revoked), set(certified_senders(store.engine))
    finally:
        store.close()


def test_a_hop_follows_key_and_root_rotations_and_honours_a_revocation(
    tmp_path: Path, sshd: SshServer
) -> None:
    site = Site(tmp_path, sshd)
    _enroll(site)
    root1, root2 = tmp_path / "vault" / "root1.key", tmp_path / "vault" / "root2.key"
    site.deliver(b"v1")
    first_key = _active_key(site)

    # 1. a new signing key: the hop accepts it from its certificate, no re-trust
    site.gateway("key", "rotate", "--root-key", str(root1))
    site.deliver(b"v2")
    second_key = _active_key(site)
    stolen = tmp_path / "stolen-gw"  # a thief's copy of the gateway with the second key
    shutil.copytree(site.gw, stolen)

    # 2. the second key is stolen: rotate away from it, revoke it; bundles carry the revocation
    site.gateway("key", "rotate", "--root-key", str(root1))
    site.gateway("key", "revoke", "--root-key", str(root1), second_key)
    site.deliver(b"v3")
    version, revoked, current = _hop_state(site)
    assert version == 1
    assert second_key in revoked
    assert second_key not in current and first_key not in current

    # the thief's bundle (validly certified before the revocation) is refused by the hop
    thief_drop = sshd.data_dir / "thief"
    thief_drop.mkdir()
    site.gateway("export", "--to", sshd.url(thief_drop), *site.ssh, home=stolen)
    refused = site.run_hop(thief_drop)
    assert refused.status == 1
    assert "key_revoked" in refused.err
    assert [p.name for p in thief_drop.iterdir()]  # left where it was
    assert not site.level3.exists()
    audit = run_relay("hop", "audit", "--home", str(site.hop), "--json")
    reasons = [json.loads(line)["fields"].get("reason") for line in audit.out.splitlines()]
    assert "key_revoked" in reasons

    # 3. a new root, signed by the old one: the hop walks one step, still with the first file
    site.gateway("root", "rotate", "--root-key", str(root1), "--new-root-key", str(root2))
    site.deliver(b"v4")
    assert _hop_state(site)[0] == 2
    # after the root rotation the thief's bundle is still refused (now an old root)
    assert site.run_hop(thief_drop).status == 1
    doctor = run_relay("doctor", "--home", str(site.hop))
    assert "hq (root)" in doctor.out, doctor.out


def test_a_hop_pinned_by_key_before_the_root_keeps_working_and_moves_to_the_root(
    tmp_path: Path, sshd: SshServer
) -> None:
    """Old hop trust (a gateway key pinned before `root init`) still forwards; a root identity
    file given later replaces the pinned key by the root."""
    site = Site(tmp_path, sshd)
    site.gateway("init", "--name", "hq")
    site.gateway("identity", "--out", str(tmp_path / "hq.identity"))  # no root yet: a key
    _enroll_agent(site)
    site.agent("trust", str(tmp_path / "hq.identity"))
    (sshd.data_dir / "down").mkdir()
    site.deliver(b"pinned-key")
    # the gateway gains a root; the old key file still works for the hop (same key)
    site.gateway("root", "init", "--root-key", str(tmp_path / "vault" / "root1.key"))
    site.deliver(b"same-key-under-root")
    # the operator gives the hop (and the agent) the root identity file once
    site.gateway("identity", "--out", str(tmp_path / "hq.identity"))
    site.agent("trust", "--replace", str(tmp_path / "hq.identity"))
    site.gateway("key", "rotate", "--root-key", str(tmp_path / "vault" / "root1.key"))
    site.deliver(b"rotated")
    assert _hop_state(site)[0] == 1
