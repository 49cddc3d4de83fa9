"""Two-tier gateway keys through the real CLI (spec §15): root init, signing-key rotation, root
rotation, revocation, and the agent following all of it with no re-trust."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Result, run_relay

PASSPHRASE = "root passphrase for tests, long enough"


@dataclass
class Site:
    """A gateway with a root and an agent that pinned the root."""

    tmp: Path
    gw: Path
    ag: Path
    out: Path
    env: dict[str, str]

    def gateway(self, *args: str, root: Path | None = None) -> Result:
        extra = ("--root-key", str(root)) if root is not None else ()
        return run_relay("gateway", *args, "--home", str(self.gw), *extra, env=self.env)

    def agent(self, *args: str) -> Result:
        return run_relay("agent", *args, "--home", str(self.ag), env=self.env)

    def export_and_import(self) -> list[dict[str, object]]:
        shutil.rmtree(self.out, ignore_errors=True)
        exported = self.gateway("export", "--to", str(self.out))
        assert exported.status == 0, exported.err
        imported = self.agent("import", "--json", str(self.out))
        return list(json.loads(imported.out))

    def get(self, path: str) -> Result:
        return run_relay("agent", "get", "--home", str(self.ag), path)


def _ok(result: Result) -> Result:
    assert result.status == 0, result.err
    return result


@pytest.fixture
def site(tmp_path: Path) -> Site:
    secret_file = tmp_path / "root.pass"
    secret_file.write_text(PASSPHRASE + "\n")
    secret_file.chmod(0o600)
    env = {"RELAY_ROOT_PASSPHRASE_FILE": str(secret_file)}
    s = Site(tmp_path, tmp_path / "gw", tmp_path / "ag", tmp_path / "out", env)
    root1 = tmp_path / "offline" / "root1.key"
    _ok(s.gateway("init", "--name", "hq"))
    _ok(s.gateway("root", "init", root=root1))
    _ok(
        run_relay(
            "agent",
            "init",
            "--home",
            str(s.ag),
            "--name",
            "plant7",
            "--request-out",
            str(tmp_path / "req"),
        )
    )
    _ok(s.gateway("enroll", str(tmp_path / "req")))
    ident = _ok(s.gateway("identity", "--out", str(tmp_path / "gw.identity")))
    assert "root fingerprint: SHA256:" in ident.out
    trusted = _ok(s.agent("trust", str(tmp_path / "gw.identity")))
    assert "(root)" in trusted.out
    _ok(run_relay("gateway", "secret", "put", "--home", str(s.gw), "db/pw", "-", stdin=b"v1"))
    _ok(s.gateway("grant", "plant7", "db/*"))
    return s


def test_the_root_file_is_wrapped_and_apart_from_the_home(site: Site) -> None:
    root1 = site.tmp / "offline" / "root1.key"
    doc = json.loads(root1.read_text())
    assert set(doc) == {"relay_root_key", "gateway", "version", "root_public", "kdf", "private"}
    assert (root1.stat().st_mode & 0o777) == 0o600
    assert not any(p.name.endswith(".key") and "root" in p.name for p in site.gw.iterdir())


def test_bundles_carry_the_chain_and_apply(site: Site) -> None:
    outcomes = site.export_and_import()
    assert [o["status"] for o in outcomes] == ["applied"]
    assert site.get("db/pw").stdout == b"v1\n"


def test_signing_key_rotation_needs_no_visit(site: Site) -> None:
    root1 = site.tmp / "offline" / "root1.key"
    site.export_and_import()
    before = json.loads(_ok(site.gateway("key", "list", "--json")).out)
    _ok(site.gateway("key", "rotate", root=root1))
    after = json.loads(_ok(site.gateway("key", "list", "--json")).out)
    states = {(k["role"], k["state"]) for k in after}
    assert ("signing", "retired") in states and ("signing", "active") in states
    assert len(after) == len(before) + 1
    _ok(run_relay("gateway", "secret", "put", "--home", str(site.gw), "db/pw", "-", stdin=b"v2"))
    assert [o["status"] for o in site.export_and_import()] == ["applied"]
    assert site.get("db/pw").stdout == b"v2\n"
    # the agent now seals its return stream to the new online key
    status = json.loads(_ok(site.agent("status", "--json")).out)
    active = next(k for k in after if k["role"] == "signing" and k["state"] == "active")
    assert active["key_id"] in json.dumps(status)


def test_revoked_key_is_refused_whatever_its_seq(site: Site) -> None:
    root1 = site.tmp / "offline" / "root1.key"
    old_bundles = site.tmp / "old"
    _ok(site.gateway("export", "--to", str(old_bundles)))  # seq 1, not yet imported
    old_key = next(
        k["key_id"]
        for k in json.loads(site.gateway("key", "list", "--json").out)
        if k["role"] == "signing"
    )
    refused = site.gateway("key", "revoke", old_key, root=root1)
    assert refused.status != 0 and "key_active" in refused.err
    _ok(site.gateway("key", "rotate", root=root1))
    _ok(site.gateway("key", "revoke", old_key, root=root1))
    listed = json.loads(site.gateway("key", "list", "--json").out)
    assert {k["state"] for k in listed if k["key_id"] == old_key} == {"revoked"}
    assert [o["status"] for o in site.export_and_import()] == ["applied"]  # seq 2
    # the old key's bundle, even with a seq no one has seen, is now refused for its key
    late = site.agent("import", "--json", str(old_bundles))
    outcome = json.loads(late.out)[0]
    assert (outcome["status"], outcome["code"]) == ("rejected", "key_revoked")
    audit = _ok(site.agent("audit", "--json")).out
    assert "key_revoked" in audit


def test_root_rotation_is_followed_one_step_at_a_time(site: Site) -> None:
    root1 = site.tmp / "offline" / "root1.key"
    root2 = site.tmp / "offline" / "root2.key"
    root3 = site.tmp / "offline" / "root3.key"
    site.export_and_import()
    _ok(site.gateway("root", "rotate", "--new-root-key", str(root2), root=root1))
    wrong = site.gateway("root", "rotate", "--new-root-key", str(root3), root=root1)
    assert wrong.status != 0 and "wrong_root" in wrong.err
    assert not root3.exists()
    _ok(site.gateway("root", "rotate", "--new-root-key", str(root3), root=root2))
    _ok(site.gateway("key", "rotate", root=root3))
    _ok(run_relay("gateway", "secret", "put", "--home", str(site.gw), "db/pw", "-", stdin=b"v3"))
    assert [o["status"] for o in site.export_and_import()] == ["applied"]
    assert site.get("db/pw").stdout == b"v3\n"
    listed = json.loads(site.gateway("key", "list", "--json").out)
    roots = [(k["version"], k["state"]) for k in listed if k["role"] == "root"]
    assert roots == [(1, "retired"), (2, "retired"), (3, "active")]
    # the old root can no longer sign anything
    stale = site.gateway("key", "rotate", root=root1)
    assert stale.status != 0 and "wrong_root" in stale.err


def test_wrong_root_passphrase_changes_nothing(site: Site, tmp_path: Path) -> None:
    root1 = site.tmp / "offline" / "root1.key"
    bad = tmp_path / "bad.pass"
    bad.write_text("not the passphrase at all")
    before = (site.gw / "trust.json").read_bytes()
    result = run_relay(
        "gateway",
        "key",
        "rotate",
        "--home",
        str(site.gw),
        "--root-key",
        str(root1),
        env={"RELAY_ROOT_PASSPHRASE_FILE": str(bad)},
    )
    assert result.status != 0 and "bad_passphrase" in result.err
    assert (site.gw / "trust.json").read_bytes() == before
    assert PASSPHRASE not in result.err + result.out


def test_key_commands_need_a_root(tmp_path: Path) -> None:
    gw = tmp_path / "gw"
    _ok(run_relay("gateway", "init", "--home", str(gw), "--name", "hq"))
    result = run_relay("gateway", "key", "list", "--home", str(gw))
    assert result.status != 0
    assert result.err.startswith("relay: error: no_root:")


def test_a_pinned_root_refuses_a_bundle_without_chain(site: Site, tmp_path: Path) -> None:
    (site.gw / "trust.json").rename(tmp_path / "trust.json")  # gateway forgets its root
    outcome = site.export_and_import()[0]
    assert (outcome["status"], outcome["code"]) == ("rejected", "cert_invalid")


def test_a_damaged_trust_file_is_one_line(site: Site) -> None:
    (site.gw / "trust.json").write_text("{not json")
    result = site.gateway("key", "list")
    assert result.status != 0
    assert result.err.startswith("relay: error: bad_trust_file:")


@pytest.mark.slow
def test_a_pass_in_the_same_process_after_a_rotation_signs_with_the_new_key(site: Site) -> None:
    """An export pass keeps its online key's derived signing key for the pass; a later pass of
    the same process, after ``key rotate`` and the old key's revocation, signs with the new key
    (an agent refuses anything the revoked key signs)."""
    import time

    from outer_gateway.fleet import ExportPass
    from outer_gateway.store import GatewayStore
    from relay.bundle.envelope import parse_envelope
    from relay.db import write_transaction
    from relay.home import Home
    from relay.transport import TransportOptions, open_destination

    root1 = site.tmp / "offline" / "root1.key"

    def one_pass(out: Path) -> list[str]:
        home = Home.open(site.gw, "gateway")
        store = GatewayStore.open(home)
        destination = open_destination(str(out), TransportOptions())
        try:
            with write_transaction(store.engine) as conn:
                conn.exec_driver_sql("UPDATE agents SET next_export_at = NULL")
            report = ExportPass(home, store, int(time.time()), 86400, 86400).run(
                destination, lambda _: None
            )
        finally:
            destination.close()
            store.close()
        assert [w["agent"] for w in report.written] == ["plant7"]
        return [parse_envelope(p.read_bytes()).header.sender_key for p in out.glob("*.bundle")]

    (old_key,) = one_pass(site.tmp / "before")
    _ok(site.gateway("key", "rotate", root=root1))
    _ok(site.gateway("key", "revoke", old_key, root=root1))
    (new_key,) = one_pass(site.out)
    assert new_key != old_key
    imported = json.loads(_ok(site.agent("import", "--json", str(site.out))).out)
    assert [o["status"] for o in imported] == ["applied"]
    assert site.get("db/pw").stdout == b"v1\n"
