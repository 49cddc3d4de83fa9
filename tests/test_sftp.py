"""SFTP transport against a real OpenSSH sshd on 127.0.0.1 (see tests/sshd_fixture.py)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from relay.errors import BundleRejected, TransportError, UsageError
from relay.transport import open_destination, open_source
from relay.transport.base import Pending
from relay.transport.progress import (
    PROGRESS_THRESHOLD,
    NoProgress,
    Progress,
    RichProgress,
    terminal_progress,
)
from relay.transport.retry import RetryPolicy
from relay.transport.sftp import TEMP_PREFIX, SftpDestination, SftpSource, is_bundle_name
from tests.sshd_fixture import (
    OpenWatch,
    SshServer,
    make_key,
    prepare_sshd,
    public_key_text,
    running_sshd,
)

MB = 1024 * 1024

# A connection drop must surface as one TransportError, never as a traceback from one of
# paramiko's helper threads.
pytestmark = [
    pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning"),
    pytest.mark.slow,  # runs sshd
]


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    with running_sshd(tmp_path / "sshd") as server:
        yield server


class Sleeps:
    """A RetryPolicy sleep that records delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def no_sleep_policy(attempts: int = 4) -> tuple[RetryPolicy, Sleeps]:
    sleeps = Sleeps()
    return RetryPolicy(attempts=attempts, sleep=sleeps), sleeps


class KillOnFirstChunk:
    """A progress factory that kills the server's sessions once the first chunk moved."""

    def __init__(self, server: SshServer) -> None:
        self.server = server
        self.fired = False

    def __call__(self, label: str, total: int) -> Progress:
        outer = self

        class _Killer(NoProgress):
            def advance(self, done: int) -> None:
                if not outer.fired:
                    outer.fired = True
                    outer.server.kill_sessions()  # returns once their sockets are closed

        return _Killer()


def listing(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir())


def test_round_trip_put_list_fetch_remove(sshd: SshServer) -> None:
    url = sshd.url(sshd.data_dir)
    dest = open_destination(url, sshd.options())
    assert isinstance(dest, SftpDestination)
    where = dest.put("b.bundle", b"second")
    dest.put("a.bundle", b"first bundle")
    dest.close()
    dest.close()  # idempotent
    assert where == f"sftp://{sshd.user}@127.0.0.1:{sshd.port}{sshd.data_dir}/b.bundle"
    (sshd.data_dir / ".hidden.bundle").write_bytes(b"dot file")
    (sshd.data_dir / "notes.txt").write_bytes(b"not a bundle")
    assert listing(sshd.data_dir) == [".hidden.bundle", "a.bundle", "b.bundle", "notes.txt"]
    assert (sshd.data_dir / "a.bundle").stat().st_mode & 0o777 == 0o640

    source = open_source(url, sshd.options())
    assert isinstance(source, SftpSource)
    pending = source.list_pending()
    assert [(p.name, p.size) for p in pending] == [("a.bundle", 12), ("b.bundle", 6)]
    assert [source.fetch(p, max_bytes=100) for p in pending] == [b"first bundle", b"second"]
    source.remove(pending[0])
    source.remove(pending[0])  # already gone: no error
    assert [p.name for p in source.list_pending()] == ["b.bundle"]
    source.close()
    assert sshd.connections() == 2  # one connection per endpoint, reused across operations


def test_source_naming_one_file_lists_it_explicitly(sshd: SshServer) -> None:
    (sshd.data_dir / "one.bundle").write_bytes(b"x" * 10)
    source = SftpSource(sshd.url(sshd.data_dir / "one.bundle"), sshd.options())
    [item] = source.list_pending()
    assert (item.name, item.size, item.explicit) == ("one.bundle", 10, True)
    assert source.fetch(item, 10) == b"x" * 10
    source.close()


def test_put_replaces_an_existing_bundle_atomically(sshd: SshServer) -> None:
    dest = SftpDestination(sshd.url(sshd.data_dir), sshd.options())
    dest.put("same.bundle", b"old")
    dest.put("same.bundle", b"new contents")
    dest.close()
    assert listing(sshd.data_dir) == ["same.bundle"]
    assert (sshd.data_dir / "same.bundle").read_bytes() == b"new contents"


def _assert_no_login_and_nothing_written(sshd: SshServer) -> None:
    log = sshd.log_path.read_text()
    assert "publickey" not in log  # the user key was never offered
    assert "Starting session" not in log
    assert listing(sshd.data_dir) == []


def test_unknown_host_is_refused_before_login(sshd: SshServer, tmp_path: Path) -> None:
    other = tmp_path / "known_hosts"
    other.write_text("[127.0.0.1]:1 " + sshd.known_hosts_line().split(" ", 1)[1])
    policy, sleeps = no_sleep_policy()
    dest = SftpDestination(
        sshd.url(sshd.data_dir), replace(sshd.options(), known_hosts=other), retry=policy
    )
    with pytest.raises(TransportError) as caught:
        dest.put("a.bundle", b"payload")
    assert caught.value.code == "host_key_unknown"
    assert f"[127.0.0.1]:{sshd.port}" in caught.value.message
    assert "SHA256:" in caught.value.message  # the offered fingerprint, to compare out of band
    assert sleeps.delays == []  # not retried
    assert sshd.connections() == 1
    _assert_no_login_and_nothing_written(sshd)


def test_changed_host_key_is_refused_before_login(sshd: SshServer) -> None:
    (sshd.data_dir / "waiting.bundle").write_bytes(b"secret-ish")
    sshd.rotate_host_key()  # the fixture's known_hosts still pins the old key
    policy, sleeps = no_sleep_policy()
    source = SftpSource(sshd.url(sshd.data_dir), sshd.options(), retry=policy)
    with pytest.raises(TransportError) as caught:
        source.list_pending()
    assert caught.value.code == "host_key_mismatch"
    assert sleeps.delays == []
    log = sshd.log_path.read_text()
    assert "publickey" not in log
    assert "Starting session" not in log


def test_rsa_host_key_is_pinned_too(tmp_path: Path) -> None:
    with running_sshd(tmp_path / "rsa", host_key_kind="rsa") as server:
        assert " ssh-rsa " in server.known_hosts_line()
        dest = SftpDestination(server.url(server.data_dir), server.options())
        dest.put("a.bundle", b"rsa")
        dest.close()
        # A pinned key of another type than the server has is refused like a changed key.
        ed25519 = make_key(tmp_path / "other_host_key")
        other = tmp_path / "known_hosts"
        other.write_text(f"[127.0.0.1]:{server.port} " + public_key_text(ed25519) + "\n")
        dest = SftpDestination(
            server.url(server.data_dir), replace(server.options(), known_hosts=other)
        )
        with pytest.raises(TransportError) as caught:
            dest.put("b.bundle", b"x")
        assert caught.value.code == "host_key_mismatch"
        assert listing(server.data_dir) == ["a.bundle"]


def test_revoked_host_key_is_refused(sshd: SshServer) -> None:
    line = sshd.known_hosts_line()
    sshd.known_hosts.write_text(line + "@revoked " + line)
    dest = SftpDestination(sshd.url(sshd.data_dir), sshd.options())
    with pytest.raises(TransportError) as caught:
        dest.put("a.bundle", b"payload")
    assert caught.value.code == "host_key_revoked"
    _assert_no_login_and_nothing_written(sshd)


def test_wrong_user_key_fails_once_without_retrying(sshd: SshServer, tmp_path: Path) -> None:
    stranger = make_key(tmp_path / "stranger")
    policy, sleeps = no_sleep_policy()
    options = replace(sshd.options(), identity_file=stranger)
    dest = SftpDestination(sshd.url(sshd.data_dir), options, retry=policy)
    with pytest.raises(TransportError) as caught:
        dest.put("a.bundle", b"payload")
    assert caught.value.code == "auth_failed"
    assert f"127.0.0.1:{sshd.port}" in caught.value.message
    assert "\n" not in caught.value.message
    assert sleeps.delays == []
    assert sshd.connections() == 1
    assert listing(sshd.data_dir) == []


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"known_hosts": None}, "known_hosts_required"),
        ({"identity_file": None}, "identity_required"),
    ],
)
def test_missing_options_are_usage_errors(
    sshd: SshServer, change: dict[str, None], code: str
) -> None:
    with pytest.raises(UsageError) as caught:
        SftpDestination(sshd.url(sshd.data_dir), replace(sshd.options(), **change))
    assert caught.value.code == code
    assert sshd.connections() == 0  # refused before any packet


def test_unreadable_identity_and_known_hosts(sshd: SshServer, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage_key"
    garbage.write_text("not a key\n")
    for options, code in [
        (replace(sshd.options(), identity_file=garbage), "identity_unreadable"),
        (replace(sshd.options(), known_hosts=tmp_path / "absent"), "known_hosts_unreadable"),
    ]:
        with pytest.raises(UsageError) as caught:
            SftpSource(sshd.url(sshd.data_dir), options).list_pending()
        assert caught.value.code == code
    assert sshd.connections() == 0


@pytest.mark.parametrize(
    "location",
    [
        "sftp://127.0.0.1/srv/drop",  # no user
        "sftp://user@127.0.0.1",  # no path
        "sftp://user:pw@127.0.0.1/srv",  # password in URL
        "sftp://user@127.0.0.1:notaport/srv",
        "sftp://user@127.0.0.1/srv/../etc",
        "sftp://user@127.0.0.1/srv?x=1",
    ],
)
def test_bad_locations(location: str, tmp_path: Path) -> None:
    from relay.transport.base import TransportOptions

    options = TransportOptions(identity_file=tmp_path / "k", known_hosts=tmp_path / "kh")
    with pytest.raises(UsageError) as caught:
        SftpDestination(location, options)
    assert caught.value.code == "bad_location"


def test_remote_folder_missing(sshd: SshServer) -> None:
    missing = sshd.data_dir / "nope"
    (sshd.data_dir / "file").write_bytes(b"")
    for path in (missing, sshd.data_dir / "file"):
        dest = SftpDestination(sshd.url(path), sshd.options())
        with pytest.raises(TransportError) as caught:
            dest.put("a.bundle", b"payload")
        assert caught.value.code == "remote_missing"
        assert str(path) in caught.value.message
        dest.close()
    source = SftpSource(sshd.url(missing), sshd.options())
    with pytest.raises(TransportError) as caught:
        source.list_pending()
    assert caught.value.code == "remote_missing"
    source.close()
    assert not missing.exists()  # never created behind the operator's back


def test_remote_folder_not_writable(tmp_path: Path) -> None:
    """A read-only SFTP account (``internal-sftp -R``): refused even for root."""
    with running_sshd(tmp_path / "ro", read_only=True) as server:
        (server.data_dir / "in.bundle").write_bytes(b"readable")
        dest = SftpDestination(server.url(server.data_dir), server.options())
        with pytest.raises(TransportError) as caught:
            dest.put("a.bundle", b"payload")
        assert caught.value.code == "remote_denied"
        dest.close()
        source = SftpSource(server.url(server.data_dir), server.options())
        [item] = source.list_pending()
        assert source.fetch(item, 100) == b"readable"  # reading still works
        with pytest.raises(TransportError) as caught:
            source.remove(item)
        assert caught.value.code == "remote_denied"
        source.close()
        assert listing(server.data_dir) == ["in.bundle"]


def test_server_killed_mid_upload_leaves_only_a_temp_that_the_next_put_cleans(
    sshd: SshServer, capfd: pytest.CaptureFixture[str]
) -> None:
    killer = KillOnFirstChunk(sshd)
    dest = SftpDestination(sshd.url(sshd.data_dir), sshd.options(), progress=killer)
    with pytest.raises(TransportError) as caught:
        dest.put("big.bundle", os.urandom(12 * MB))
    assert killer.fired
    assert caught.value.code == "connection_lost"
    [temp] = listing(sshd.data_dir)
    assert temp.startswith(TEMP_PREFIX)  # a dot file: readers ignore it
    assert "big.bundle" not in listing(sshd.data_dir)

    source = SftpSource(sshd.url(sshd.data_dir), sshd.options())
    assert source.list_pending() == []
    source.close()

    # A temp of ours from an hour ago is stale; a fresh one may be a live upload, and a
    # dot file without our prefix is not ours: both stay.
    hour_ago = time.time() - 3600
    os.utime(sshd.data_dir / temp, (hour_ago, hour_ago))
    foreign = sshd.data_dir / ".other-tool.part"
    foreign.write_bytes(b"")
    os.utime(foreign, (hour_ago, hour_ago))
    live = sshd.data_dir / f"{TEMP_PREFIX}aaaaaaaaaaaa.x.bundle.part"
    live.write_bytes(b"")
    dest = SftpDestination(sshd.url(sshd.data_dir), sshd.options())  # reconnects
    dest.put("big.bundle", b"complete")
    dest.close()
    assert listing(sshd.data_dir) == [".other-tool.part", live.name, "big.bundle"]
    assert (sshd.data_dir / "big.bundle").read_bytes() == b"complete"
    assert capfd.readouterr().err == ""  # paramiko's thread-side log lines stay off stderr


def test_server_killed_mid_download_returns_nothing(sshd: SshServer) -> None:
    payload = os.urandom(16 * MB)
    (sshd.data_dir / "big.bundle").write_bytes(payload)
    killer = KillOnFirstChunk(sshd)
    source = SftpSource(sshd.url(sshd.data_dir), sshd.options(), progress=killer)
    [item] = source.list_pending()
    with pytest.raises(TransportError) as caught:
        source.fetch(item, 32 * MB)
    assert killer.fired
    assert caught.value.code == "connection_lost"
    assert (sshd.data_dir / "big.bundle").read_bytes() == payload  # untouched on the server
    assert source.fetch(item, 32 * MB) == payload  # the next call reconnects
    source.close()


def test_a_channel_closed_before_the_transport_notices_is_connection_lost(
    sshd: SshServer,
) -> None:
    """paramiko closes its channels before it marks the transport inactive: a reader woken by
    the closed channel mid-transfer must report ``connection_lost`` (not ``remote_failed``),
    and the next call reconnects."""
    payload = os.urandom(4 * MB)
    (sshd.data_dir / "big.bundle").write_bytes(payload)
    closed: list[bool] = []

    def close_channel_on_first_chunk(label: str, total: int) -> Progress:
        class _Closer(NoProgress):
            def advance(self, done: int) -> None:
                if not closed:
                    transport = source.session._transport
                    assert transport is not None and transport.is_active()
                    source.session.client().sock.close()  # the channel only
                    closed.append(transport.is_active())

        return _Closer()

    source = SftpSource(
        sshd.url(sshd.data_dir), sshd.options(), progress=close_channel_on_first_chunk
    )
    [item] = source.list_pending()
    with pytest.raises(TransportError) as caught:
        source.fetch(item, 32 * MB)
    assert closed == [True]  # the transport was still running when the channel closed
    assert caught.value.code == "connection_lost"
    assert source.fetch(item, 32 * MB) == payload  # the next call reconnects
    source.close()


def test_a_write_that_met_end_of_file_is_connection_lost_while_the_transport_runs(
    sshd: SshServer,
) -> None:
    """A window adjust sent while reading can be the first to meet the dead socket: paramiko
    raises "Server connection dropped" from that EOFError while its transport still says
    active. The chain decides, and the next call reconnects."""
    from paramiko.ssh_exception import SSHException

    (sshd.data_dir / "a.bundle").write_bytes(b"payload")
    source = SftpSource(sshd.url(sshd.data_dir), sshd.options())
    [item] = source.list_pending()
    assert source.session.is_alive()
    with pytest.raises(TransportError) as caught, source._remote("download", item.ref):
        try:
            raise EOFError()
        except EOFError as exc:
            raise SSHException("Server connection dropped: ") from exc
    assert caught.value.code == "connection_lost"
    assert not source.session.is_alive()  # closed: the next call opens a new connection
    assert source.fetch(item, MB) == b"payload"
    with pytest.raises(TransportError) as caught, source._remote("download", item.ref):
        raise SSHException("No such handle")  # a live connection's own failure
    assert caught.value.code == "remote_failed"
    source.close()


def test_oversized_file_is_rejected_without_being_opened(sshd: SshServer) -> None:
    big = sshd.data_dir / "big.bundle"
    big.write_bytes(b"\0" * (2 * MB))
    watch = OpenWatch(sshd.data_dir)
    source = SftpSource(sshd.url(sshd.data_dir), sshd.options())
    [item] = source.list_pending()
    with pytest.raises(BundleRejected) as caught:
        source.fetch(item, MB)
    assert caught.value.code == "too_large"
    # The size in the listing is not trusted: fetch stats again itself.
    with pytest.raises(BundleRejected):
        source.fetch(Pending(name=item.name, ref=item.ref, size=1), MB)
    assert watch.opened() == []  # decided from lstat: never opened, not a byte read
    assert source.fetch(item, 2 * MB) == b"\0" * (2 * MB)  # exactly at the cap is fine
    source.close()
    assert watch.opened() == [big]  # the watch does see a real open
    watch.close()


def test_file_growing_during_download_is_cut_at_the_cap(sshd: SshServer) -> None:
    path = sshd.data_dir / "growing.bundle"
    path.write_bytes(b"a" * (3 * MB // 2))  # under the cap when stat'ed

    def grow(label: str, total: int) -> Progress:
        class _Grower(NoProgress):
            def advance(self, done: int) -> None:
                with path.open("ab") as handle:
                    handle.write(b"b" * (8 * MB))

        return _Grower()

    source = SftpSource(sshd.url(sshd.data_dir), sshd.options(), progress=grow)
    [item] = source.list_pending()
    with pytest.raises(BundleRejected) as caught:
        source.fetch(item, 2 * MB)
    assert caught.value.code == "too_large"
    source.close()


def test_links_and_special_files_are_not_followed(sshd: SshServer, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"server-side secret")
    (sshd.data_dir / "link.bundle").symlink_to(outside / "secret")
    (sshd.data_dir / "dangling.bundle").symlink_to(tmp_path / "nowhere")
    (sshd.data_dir / "dir.bundle").mkdir()
    os.mkfifo(sshd.data_dir / "fifo.bundle")  # opening it would block the server
    watch = OpenWatch(sshd.data_dir, outside)
    source = SftpSource(sshd.url(sshd.data_dir), sshd.options())
    pending = source.list_pending()
    assert [p.name for p in pending] == [
        "dangling.bundle",
        "dir.bundle",
        "fifo.bundle",
        "link.bundle",
    ]
    for item in pending:
        with pytest.raises(BundleRejected) as caught:
            source.fetch(item, MB)
        assert caught.value.code == "not_regular_file"
    source.close()
    opened = watch.opened()
    watch.close()
    assert opened == []  # nothing was opened, not even the link's target


@pytest.mark.parametrize(
    ("name", "picked"),
    [
        ("a.bundle", True),
        (".a.bundle", False),
        ("a.bundle.part", False),
        ("../a.bundle", False),  # names come from the server: a hostile one could send these
        ("x/a.bundle", False),
        ("x\\a.bundle", False),
        ("a\x00.bundle", False),
    ],
)
def test_listed_names_are_plain_bundle_names(name: str, picked: bool) -> None:
    assert is_bundle_name(name) is picked


def test_garbage_is_returned_as_bytes_for_the_verifier_to_reject(sshd: SshServer) -> None:
    garbage = os.urandom(70_000)
    (sshd.data_dir / "junk.bundle").write_bytes(garbage)
    source = SftpSource(sshd.url(sshd.data_dir), sshd.options())
    [item] = source.list_pending()
    assert source.fetch(item, MB) == garbage
    source.close()


def test_retries_until_the_server_comes_up(tmp_path: Path) -> None:
    server = prepare_sshd(tmp_path / "late")  # keys and port chosen, not listening yet
    started_after: list[int] = []

    def sleep(seconds: float) -> None:
        assert 0 <= seconds <= 8
        started_after.append(server.connections())
        if len(started_after) == 2:
            server.start()

    policy = RetryPolicy(attempts=4, base=0.5, cap=8.0, sleep=sleep)
    try:
        dest = SftpDestination(server.url(server.data_dir), server.options(), retry=policy)
        dest.put("late.bundle", b"made it")
        dest.close()
        assert len(started_after) == 2  # attempts 1 and 2 refused, attempt 3 connected
        assert server.connections() == 1
        assert (server.data_dir / "late.bundle").read_bytes() == b"made it"
    finally:
        server.stop()


def test_gives_up_after_the_configured_attempts(tmp_path: Path) -> None:
    server = prepare_sshd(tmp_path / "never")
    sleeps = Sleeps()
    options = server.options(connect_attempts="3", retry_base="0.25", retry_cap="1")
    policy = RetryPolicy.from_extra(options.extra, sleep=sleeps)
    assert (policy.attempts, policy.base, policy.cap) == (3, 0.25, 1.0)
    dest = SftpDestination(server.url(server.data_dir), options, retry=policy)
    with pytest.raises(TransportError) as caught:
        dest.put("a.bundle", b"x")
    assert caught.value.code == "connect_failed"
    assert f"127.0.0.1:{server.port}" in caught.value.message
    assert "refused" in caught.value.message.lower()
    assert "3 attempt" in caught.value.message
    assert len(sleeps.delays) == 2
    assert all(0 <= d <= 1.0 for d in sleeps.delays)
    with pytest.raises(TransportError) as again:  # later calls do not start a new round
        dest.put("b.bundle", b"x")
    assert again.value.code == "connect_failed"
    assert len(sleeps.delays) == 2
    dest.close()
    # After the cool-down (0 here) a new call starts a new round: a daemon recovers.
    options = server.options(connect_attempts="3", retry_cooldown="0")
    dest = SftpDestination(server.url(server.data_dir), options, retry=policy)
    for _ in range(2):
        with pytest.raises(TransportError):
            dest.put("a.bundle", b"x")
    assert len(sleeps.delays) == 2 + 2 * 2


def test_a_silent_server_times_out_instead_of_hanging(tmp_path: Path) -> None:
    server = prepare_sshd(tmp_path / "silent")  # its keys, but a listener that never speaks
    with socket.create_server((server.host, server.port)) as listener:
        sleeps = Sleeps()
        options = server.options(connect_timeout="0.5", connect_attempts="2")
        policy = RetryPolicy.from_extra(options.extra, sleep=sleeps)
        dest = SftpDestination(server.url(server.data_dir), options, retry=policy)
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            dest.put("a.bundle", b"x")
        assert time.monotonic() - started < 20  # bounded, not a hang (timeouts are 0.5 s)
        assert caught.value.code == "connect_failed"
        assert "2 attempt" in caught.value.message
        assert len(sleeps.delays) == 1
        listener.close()


def test_known_hosts_built_with_ssh_keyscan_and_hashed(sshd: SshServer, tmp_path: Path) -> None:
    """The recipe of docs/sftp.md: ssh-keyscan, compare fingerprints, hash the file."""
    scanned = subprocess.run(
        ["ssh-keyscan", "-p", str(sshd.port), "-t", "ed25519", sshd.host],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    known = tmp_path / "known_hosts"
    known.write_text(scanned)
    fingerprints = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(known)], check=True, capture_output=True, text=True
    ).stdout
    expected = subprocess.run(
        ["ssh-keygen", "-l", "-f", f"{sshd.host_key}.pub"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert fingerprints.split()[1] == expected.split()[1]
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], check=True, capture_output=True)
    assert known.read_text().startswith("|1|")  # host names hashed
    dest = SftpDestination(sshd.url(sshd.data_dir), replace(sshd.options(), known_hosts=known))
    dest.put("a.bundle", b"pinned")
    dest.close()
    assert (sshd.data_dir / "a.bundle").read_bytes() == b"pinned"


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    top = RetryPolicy(base=0.5, cap=8.0, uniform=lambda low, high: high)
    assert [top.delay(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    bottom = RetryPolicy(uniform=lambda low, high: low)
    assert bottom.delay(3) == 0.0
    drawn = [RetryPolicy().delay(2) for _ in range(200)]
    assert all(0 <= d <= 2.0 for d in drawn)
    assert len(set(drawn)) > 100  # jittered, not in lock step


@pytest.mark.parametrize("key", ["connect_attempts", "retry_base", "connect_timeout"])
def test_bad_numeric_options(sshd: SshServer, key: str) -> None:
    with pytest.raises(UsageError) as caught:
        SftpDestination(sshd.url(sshd.data_dir), sshd.options(**{key: "soon"}))
    assert caught.value.code == "bad_value"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    big = PROGRESS_THRESHOLD
    assert isinstance(terminal_progress("upload", big), NoProgress)  # pytest captures: no TTY
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)
    assert isinstance(terminal_progress("upload", big - 1), NoProgress)  # small: quiet
    bar = terminal_progress("upload x.bundle", big)
    assert isinstance(bar, RichProgress)
    bar.advance(big)
    bar.close()
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # piped stdout (e.g. --json): quiet
    assert isinstance(terminal_progress("upload", big), NoProgress)


def test_large_put_is_quiet_when_not_a_tty(
    sshd: SshServer, capfd: pytest.CaptureFixture[str]
) -> None:
    dest = SftpDestination(sshd.url(sshd.data_dir), sshd.options())
    dest.put("large.bundle", bytes(PROGRESS_THRESHOLD + 1))
    dest.close()
    assert capfd.readouterr() == ("", "")


def test_paramiko_is_not_imported_by_the_transport_package() -> None:
    code = (
        "import sys, relay.transport, relay.transport.sftp; "
        "print('paramiko' in sys.modules, 'rich' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    )
    assert result.stdout.split() == ["False", "False"]
