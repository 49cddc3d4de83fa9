"""One SFTP connection: locations, settings, identities, retries and the order of checks
(``relay.transport.sftp_session``). The handshake tests talk to a real SSH server (paramiko's, in
a thread) on loopback; the rest needs no server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from paramiko.ecdsakey import ECDSAKey
from paramiko.server import ServerInterface
from paramiko.transport import Transport

from relay.codes import (
    AUTH_FAILED,
    BAD_LOCATION,
    BAD_VALUE,
    CONNECT_FAILED,
    HOST_KEY_MISMATCH,
    HOST_KEY_UNKNOWN,
    IDENTITY_REQUIRED,
    IDENTITY_UNREADABLE,
    KNOWN_HOSTS_REQUIRED,
)
from relay.errors import TransportError, UsageError
from relay.transport.base import TransportOptions
from relay.transport.retry import RetryPolicy
from relay.transport.sftp_session import (
    SessionSettings,
    SftpLocation,
    SftpSession,
    load_identity,
    parse_location,
)

SERVER_KEY = ECDSAKey.generate()
CLIENT_KEY = ECDSAKey.generate()


def test_a_location_is_parsed_and_printed_back() -> None:
    loc = parse_location("sftp://relay%2Bin@sftp.example:2222/srv/in%20box/")
    assert loc == SftpLocation("relay+in", "sftp.example", 2222, "/srv/in box")
    assert loc.address == "sftp.example:2222"
    assert str(loc) == "sftp://relay+in@sftp.example:2222/srv/in box"
    v6 = parse_location("sftp://u@[::1]/")
    assert (v6.port, v6.path, v6.address) == (22, "/", "[::1]:22")


@pytest.mark.parametrize(
    "location",
    [
        "scp://u@h/x",
        "sftp://h/x",
        "sftp://u@/x",
        "sftp://u:password@h/x",
        "sftp://u@h",
        "sftp://u@h/x?y=1",
        "sftp://u@h/x#frag",
        "sftp://u@h/a/../b",
        "sftp://u@h/a%00b",
        "sftp://u@h:port/x",
        "sftp://u@h:99999/x",
    ],
)
def test_anything_else_is_bad_location_without_the_password(location: str) -> None:
    with pytest.raises(UsageError) as refused:
        parse_location(location)
    assert refused.value.code == BAD_LOCATION
    if "password" in location:
        assert "passwords are not accepted" in refused.value.message


def options(tmp_path: Path, **extra: str) -> TransportOptions:
    return TransportOptions(
        identity_file=tmp_path / "id", known_hosts=tmp_path / "known_hosts", extra=extra
    )


def test_settings_need_a_known_hosts_file_and_an_identity(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as refused:
        SessionSettings.from_options(TransportOptions(identity_file=tmp_path / "id"))
    assert refused.value.code == KNOWN_HOSTS_REQUIRED
    with pytest.raises(UsageError) as refused:
        SessionSettings.from_options(TransportOptions(known_hosts=tmp_path / "kh"))
    assert refused.value.code == IDENTITY_REQUIRED


def test_settings_read_their_timeouts(tmp_path: Path) -> None:
    settings = SessionSettings.from_options(
        options(tmp_path, connect_timeout="2.5", io_timeout="7", retry_cooldown="0")
    )
    assert (settings.connect_timeout, settings.io_timeout, settings.retry_cooldown) == (2.5, 7, 0)
    assert SessionSettings.from_options(options(tmp_path)).connect_timeout == 10.0


@pytest.mark.parametrize(
    "extra",
    [{"connect_timeout": "0"}, {"io_timeout": "-1"}, {"retry_cooldown": "soon"}],
)
def test_a_timeout_that_is_not_a_positive_number_is_bad_value(
    tmp_path: Path, extra: dict[str, str]
) -> None:
    with pytest.raises(UsageError) as refused:
        SessionSettings.from_options(options(tmp_path, **extra))
    assert refused.value.code == BAD_VALUE


def test_identity_files_load_or_say_why_not(tmp_path: Path) -> None:
    good = tmp_path / "good"
    CLIENT_KEY.write_private_key_file(str(good))
    assert load_identity(good).asbytes() == CLIENT_KEY.asbytes()
    locked = tmp_path / "locked"
    CLIENT_KEY.write_private_key_file(str(locked), password="pw")
    garbage = tmp_path / "garbage"
    garbage.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnope\n")
    for path, says in [
        (locked, "is passphrase-protected"),
        (garbage, "is not a usable private key"),
        (tmp_path / "absent", "cannot be read"),
    ]:
        with pytest.raises(UsageError) as refused:
            load_identity(path)
        assert refused.value.code == IDENTITY_UNREADABLE
        assert says in refused.value.message


def closed_port() -> tuple[socket.socket, int]:
    """A bound, never listening TCP socket: connecting to its port is refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


def ready_files(tmp_path: Path, known_line: str = "") -> TransportOptions:
    CLIENT_KEY.write_private_key_file(str(tmp_path / "id"))
    (tmp_path / "known_hosts").write_text(known_line)
    return options(tmp_path)


def test_a_refused_connection_is_retried_then_not_again_until_the_cooldown(
    tmp_path: Path,
) -> None:
    sock, port = closed_port()
    slept: list[float] = []
    policy = RetryPolicy(attempts=3, base=1.0, sleep=slept.append, uniform=lambda a, b: b)
    session = SftpSession(
        parse_location(f"sftp://u@127.0.0.1:{port}/in"), ready_files(tmp_path), policy
    )
    with sock:
        with pytest.raises(TransportError) as first:
            session.client()
        assert first.value.code == CONNECT_FAILED
        assert "after 3 attempt(s)" in first.value.message
        assert slept == [1.0, 2.0]  # exponential backoff between the attempts
        with pytest.raises(TransportError) as second:
            session.client()
        assert (second.value.code, second.value.message) == (CONNECT_FAILED, first.value.message)
        assert slept == [1.0, 2.0]  # no new round within the cooldown
    assert not session.is_alive()
    session.close()
    session.close()  # idempotent


def test_with_no_cooldown_every_call_tries_again(tmp_path: Path) -> None:
    sock, port = closed_port()
    slept: list[float] = []
    policy = RetryPolicy(attempts=2, sleep=slept.append)
    opts = ready_files(tmp_path)
    opts.extra["retry_cooldown"] = "0"
    session = SftpSession(parse_location(f"sftp://u@127.0.0.1:{port}/in"), opts, policy)
    with sock:
        for _ in range(2):
            with pytest.raises(TransportError):
                session.client()
    assert len(slept) == 2


class _RefuseEveryone(ServerInterface):
    def get_allowed_auths(self, username: str) -> str:
        return "publickey"


@pytest.fixture
def ssh_server() -> Iterator[int]:
    """A real SSH server (paramiko) on loopback that completes key exchange, then refuses every
    login; one connection at a time, until the test ends."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    transports: list[Transport] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # the listener was shut down
                return
            transport = Transport(conn)
            transports.append(transport)
            transport.add_server_key(SERVER_KEY)
            try:
                transport.start_server(server=_RefuseEveryone())
            except Exception:  # noqa: S112 (the client hung up: next connection)
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(30)
        for transport in transports:
            transport.close()


def _session(tmp_path: Path, port: int, known_line: str) -> tuple[SftpSession, list[float]]:
    slept: list[float] = []
    policy = RetryPolicy(attempts=3, sleep=slept.append)
    location = parse_location(f"sftp://relay@127.0.0.1:{port}/in")
    return SftpSession(location, ready_files(tmp_path, known_line), policy), slept


@pytest.mark.slow  # a real SSH server thread
def test_an_unknown_or_changed_host_key_is_refused_once_and_never_retried(
    tmp_path: Path, ssh_server: int
) -> None:
    session, slept = _session(tmp_path, ssh_server, "")
    with pytest.raises(TransportError) as refused:
        session.client()
    assert refused.value.code == HOST_KEY_UNKNOWN
    assert SERVER_KEY.fingerprint in refused.value.message
    other = ECDSAKey.generate()
    pinned = f"[127.0.0.1]:{ssh_server} {other.get_name()} {other.get_base64()}\n"
    session, slept = _session(tmp_path, ssh_server, pinned)
    with pytest.raises(TransportError) as refused:
        session.client()
    assert refused.value.code == HOST_KEY_MISMATCH
    assert slept == []  # retrying cannot fix a host key


@pytest.mark.slow  # a real SSH server thread
def test_a_refused_login_after_a_pinned_host_key_is_auth_failed(
    tmp_path: Path, ssh_server: int
) -> None:
    pinned = f"[127.0.0.1]:{ssh_server} {SERVER_KEY.get_name()} {SERVER_KEY.get_base64()}\n"
    session, slept = _session(tmp_path, ssh_server, pinned)
    with pytest.raises(TransportError) as refused:
        session.client()
    assert refused.value.code == AUTH_FAILED
    assert "refused the key" in refused.value.message
    assert slept == []
    assert not session.is_alive()
