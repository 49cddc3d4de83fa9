"""Host key pinning against a known_hosts file: ``relay.transport.known_hosts``, with real keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from paramiko.ecdsakey import ECDSAKey
from paramiko.hostkeys import HostKeys
from paramiko.pkey import PKey
from paramiko.rsakey import RSAKey

from relay.codes import (
    HOST_KEY_MISMATCH,
    HOST_KEY_REVOKED,
    HOST_KEY_UNKNOWN,
    KNOWN_HOSTS_UNREADABLE,
)
from relay.errors import TransportError, UsageError
from relay.transport.known_hosts import KnownHosts, host_entry_name

PINNED = ECDSAKey.generate()
OTHER = ECDSAKey.generate()


def line(name: str, key: PKey) -> str:
    return f"{name} {key.get_name()} {key.get_base64()}"


def known(tmp_path: Path, *lines: str) -> KnownHosts:
    path = tmp_path / "known_hosts"
    path.write_text("\n".join(lines) + "\n")
    return KnownHosts(path)


def refusal(hosts: KnownHosts, host: str, port: int, key: PKey) -> TransportError:
    with pytest.raises(TransportError) as refused:
        hosts.verify(host, port, key)
    return refused.value


def test_openssh_names_a_port_other_than_22_in_brackets() -> None:
    assert host_entry_name("sftp.example", 22) == "sftp.example"
    assert host_entry_name("sftp.example", 2222) == "[sftp.example]:2222"


def test_a_pinned_key_passes_on_its_host_and_port_only(tmp_path: Path) -> None:
    hosts = known(tmp_path, "# comment", "", line("[127.0.0.1]:2222", PINNED))
    hosts.verify("127.0.0.1", 2222, PINNED)
    assert refusal(hosts, "127.0.0.1", 22, PINNED).code == HOST_KEY_UNKNOWN
    assert refusal(hosts, "127.0.0.2", 2222, PINNED).code == HOST_KEY_UNKNOWN


def test_a_hashed_host_name_pins_too(tmp_path: Path) -> None:
    hosts = known(tmp_path, line(HostKeys.hash_host("sftp.example"), PINNED))
    hosts.verify("sftp.example", 22, PINNED)


def test_another_key_for_a_pinned_host_is_a_mismatch_that_names_the_offered_key(
    tmp_path: Path,
) -> None:
    hosts = known(tmp_path, line("sftp.example", PINNED))
    error = refusal(hosts, "sftp.example", 22, OTHER)
    assert error.code == HOST_KEY_MISMATCH
    assert OTHER.fingerprint in error.message
    assert "man-in-the-middle" in error.message


def test_an_unknown_host_says_how_to_pin_it(tmp_path: Path) -> None:
    error = refusal(known(tmp_path), "sftp.example", 22, PINNED)
    assert error.code == HOST_KEY_UNKNOWN
    assert "out of band" in error.message


def test_a_revoked_key_is_refused_even_when_another_line_pins_it(tmp_path: Path) -> None:
    hosts = known(
        tmp_path,
        line("sftp.example", PINNED),
        "@revoked * " + line("", PINNED).strip(),
    )
    assert refusal(hosts, "sftp.example", 22, PINNED).code == HOST_KEY_REVOKED


def test_unreadable_lines_and_cert_authorities_pin_nothing(tmp_path: Path) -> None:
    hosts = known(
        tmp_path,
        "sftp.example ssh-ed25519 not-base64!!",
        "@cert-authority * " + line("", PINNED).strip(),
        "@revoked * ssh-ed25519 %%%",
        "just-one-field",
    )
    assert refusal(hosts, "sftp.example", 22, PINNED).code == HOST_KEY_UNKNOWN


def test_the_pinned_key_types_are_asked_for_first(tmp_path: Path) -> None:
    hosts = known(tmp_path, line("h", PINNED), line("h", RSAKey.generate(1024)))
    types = hosts.key_types_for("h", 22)
    assert types == [PINNED.get_name(), "rsa-sha2-512", "rsa-sha2-256"]  # never SHA-1 ssh-rsa
    assert hosts.key_types_for("unknown", 22) == []


def test_a_missing_file_is_one_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as refused:
        KnownHosts(tmp_path / "absent")
    assert refused.value.code == KNOWN_HOSTS_UNREADABLE
    assert "No such file" in refused.value.message
