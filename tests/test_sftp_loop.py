"""The whole DMZ loop through a real OpenSSH server: gateway → SFTP → hop → folder → agent, and
the audit back by SFTP."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pair, run_relay
from tests.intake_kit import audit_events
from tests.sshd_fixture import OpenWatch, SshServer, running_sshd


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    with running_sshd(tmp_path / "sshd") as server:
        yield server


def ssh_flags(server: SshServer) -> list[str]:
    return ["--identity-file", str(server.identity_file), "--known-hosts", str(server.known_hosts)]


def test_gateway_sftp_hop_folder_agent_and_audit_back(pair: Pair, sshd: SshServer) -> None:
    down, up = sshd.data_dir / "down", sshd.data_dir / "up"
    down.mkdir()
    up.mkdir()
    pair.put("db/pw", b"over-the-dmz")
    pair.gateway("grant", "plant7", "db/*")
    exported = pair.gateway("export", "--to", sshd.url(down), *ssh_flags(sshd))
    assert exported.status == 0, exported.err
    assert [p.name for p in down.iterdir()] == ["hq-to-plant7.secrets.0000000001.bundle"]
    level3 = pair.root / "level3"
    hopped = run_relay(
        "hop",
        "--home",
        str(pair.root / "hop"),
        "--from",
        sshd.url(down),
        "--to",
        str(level3),
        "--trust",
        str(pair.root / "gw.identity"),
        *ssh_flags(sshd),
    )
    assert hopped.status == 0, hopped.err
    assert pair.agent("import", str(level3)).status == 0
    assert pair.get("db/pw").stdout == b"over-the-dmz\n"
    # audit back: the agent pushes, the gateway pulls and cleans up
    pushed = pair.agent("audit", "export", "--to", sshd.url(up), *ssh_flags(sshd))
    assert pushed.status == 0, pushed.err
    pulled = pair.gateway("import", sshd.url(up), "--delete-after-import", *ssh_flags(sshd))
    assert pulled.status == 0, pulled.err
    assert "new records" in pulled.out
    assert list(up.iterdir()) == []
    assert pair.gateway("audit", "verify").status == 0


def test_agent_pulls_directly_and_skips_an_applied_bundle_from_its_signed_head(
    pair: Pair, sshd: SshServer
) -> None:
    down = sshd.data_dir / "down"
    down.mkdir()
    pair.put("db/pw", os.urandom(450_000).hex().encode())  # a bundle of about 1.2 MB
    pair.gateway("grant", "plant7", "db/*")
    pair.gateway("export", "--to", sshd.url(down), *ssh_flags(sshd))
    first = pair.agent("import", sshd.url(down), *ssh_flags(sshd))
    assert first.status == 0, first.err
    watch = OpenWatch(down)
    again = pair.agent("import", "--json", sshd.url(down), *ssh_flags(sshd))
    assert again.status == 0
    assert '"duplicate"' in again.out
    # Only the head was read (a few 32 KiB requests), not the 1.2 MB: the pull stays cheap.
    assert 1 <= len(watch.opened()) <= 8, len(watch.opened())


def test_a_tampered_copy_under_an_applied_name_is_bad_signature_over_sftp(
    pair: Pair, sshd: SshServer
) -> None:
    down = sshd.data_dir / "down"
    down.mkdir()
    pair.put("db/pw", b"v1")
    pair.gateway("grant", "plant7", "db/*")
    pair.gateway("export", "--to", sshd.url(down), *ssh_flags(sshd))
    assert pair.agent("import", sshd.url(down), *ssh_flags(sshd)).status == 0
    (bundle,) = down.iterdir()
    data = bytearray(bundle.read_bytes())
    data[data.index(b'"seq":1') + 6] = ord("2")  # same name, header says seq 2: not signed
    bundle.write_bytes(bytes(data))
    again = pair.agent("import", sshd.url(down), *ssh_flags(sshd))
    assert again.status == 1
    assert f"relay: rejected: {bundle.name}: bad_signature: " in again.err
    assert [p for p in (pair.ag / "quarantine").iterdir() if ".bad_signature." in p.name]
    rejected = audit_events(pair, "bundle.rejected")
    assert rejected[-1]["fields"]["reason"] == "bad_signature"
    assert pair.get("db/pw").stdout == b"v1\n"


def test_sftp_settings_in_the_home_replace_the_flags(pair: Pair, sshd: SshServer) -> None:
    down = sshd.data_dir / "down"
    down.mkdir()
    pair.gateway("config", "set", "sftp.identity_file", str(sshd.identity_file))
    pair.gateway("config", "set", "sftp.known_hosts", str(sshd.known_hosts))
    pair.put("db/pw", b"v")
    pair.gateway("grant", "plant7", "db/*")
    assert pair.gateway("export", "--to", sshd.url(down)).status == 0
    unknown = pair.root / "empty_known_hosts"
    unknown.write_text("")
    refused = pair.gateway("export", "--to", sshd.url(down), "--known-hosts", str(unknown))
    assert refused.status != 0
    assert "host_key_unknown" in refused.err
    assert len(list(down.iterdir())) == 1


def test_the_hop_rejects_a_tampered_copy_under_a_forwarded_name_over_sftp(
    pair: Pair, sshd: SshServer
) -> None:
    """Regression: the hop skipped a listed file whose name and size matched a forwarded one."""
    down = sshd.data_dir / "down"
    down.mkdir()
    pair.put("db/pw", b"v1")
    pair.gateway("grant", "plant7", "db/*")
    pair.gateway("export", "--to", sshd.url(down), *ssh_flags(sshd))
    level3 = pair.root / "level3"
    hop = ("hop", "--home", str(pair.root / "hop"), "--from", sshd.url(down), "--to", str(level3))
    trust = ("--trust", str(pair.root / "gw.identity"))
    assert run_relay(*hop, *trust, *ssh_flags(sshd)).status == 0
    again = run_relay(*hop, *ssh_flags(sshd))
    assert (again.status, again.out) == (0, "")  # authentic and forwarded: skipped from its head
    (bundle,) = down.iterdir()
    data = bytearray(bundle.read_bytes())
    data[data.index(b'"seq":1') + 6] = ord("2")  # same name, same size, header not signed
    bundle.write_bytes(bytes(data))
    tampered = run_relay(*hop, *ssh_flags(sshd))
    assert tampered.status == 1
    assert "bad_signature" in tampered.err
