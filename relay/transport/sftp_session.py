"""One SFTP connection: parse ``sftp://`` locations, connect with retries, pin the host key.

The order of a connection is fixed: TCP connect, SSH key exchange, host key check against the
known_hosts file, public-key login, SFTP subsystem. TCP and key-exchange failures are retried
(:mod:`relay.transport.retry`); a host key that is unknown or changed, and a refused login, are
not: retrying cannot fix them and would only hammer the server.

Error codes raised here (``TransportError``): ``connect_failed``, ``auth_failed``,
``host_key_unknown``, ``host_key_mismatch``, ``host_key_revoked``; and ``UsageError``:
``bad_location``, ``known_hosts_required``, ``known_hosts_unreadable``, ``identity_required``,
``identity_unreadable``, ``bad_value``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from relay.codes import (
    AUTH_FAILED,
    BAD_LOCATION,
    BAD_VALUE,
    CONNECT_FAILED,
    IDENTITY_REQUIRED,
    IDENTITY_UNREADABLE,
    KNOWN_HOSTS_REQUIRED,
)
from relay.errors import TransportError, UsageError
from relay.transport.base import TransportOptions
from relay.transport.known_hosts import KnownHosts
from relay.transport.retry import RetryPolicy, call_with_retry

if TYPE_CHECKING:
    from paramiko.pkey import PKey
    from paramiko.sftp_client import SFTPClient
    from paramiko.transport import Transport

# Downloads: a 64 KiB read answer (relay.transport.sftp.READ_REQUEST) plus its header fits one SSH
# packet of 128 KiB (paramiko's default of 32 KiB splits each in three). Windows larger than 2 MiB
# made paramiko slower, not faster.
RECEIVE_PACKET = 128 * 1024
RECEIVE_WINDOW = 2 * 1024 * 1024


@dataclass(frozen=True)
class SftpLocation:
    """``sftp://USER@HOST[:PORT]/ABSOLUTE/PATH``, parsed."""

    user: str
    host: str
    port: int
    path: str

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"sftp://{self.user}@{self.address}{self.path}"


def parse_location(location: str) -> SftpLocation:
    """Parse an ``sftp://`` location; ``UsageError`` (``bad_location``) if it is not one."""
    parts = urlsplit(location)
    try:
        port = parts.port or 22
    except ValueError:
        raise UsageError(f"bad port in {location!r}", code=BAD_LOCATION) from None
    problem = None
    if parts.scheme.lower() != "sftp":
        problem = "not an sftp:// location"
    elif not parts.username or not parts.hostname:
        problem = "user and host are required: sftp://USER@HOST[:PORT]/ABSOLUTE/PATH"
    elif parts.password is not None:
        problem = "passwords are not accepted in locations; use an identity file"
    elif not parts.path.startswith("/") or parts.query or parts.fragment:
        problem = "the remote path must be absolute, without ?query or #fragment"
    if problem:
        raise UsageError(f"{location!r}: {problem}", code=BAD_LOCATION)
    path = unquote(parts.path)
    if "\x00" in path or any(seg == ".." for seg in path.split("/")):
        raise UsageError(f"{location!r}: unsafe remote path", code=BAD_LOCATION)
    assert parts.username is not None and parts.hostname is not None  # noqa: S101 (checked)
    return SftpLocation(unquote(parts.username), parts.hostname, port, path.rstrip("/") or "/")


@dataclass(frozen=True)
class SessionSettings:
    """What a connection needs, checked before the first packet is sent."""

    identity_file: Path
    known_hosts: Path
    connect_timeout: float = 10.0
    io_timeout: float = 60.0
    retry_cooldown: float = 60.0

    @classmethod
    def from_options(cls, options: TransportOptions) -> SessionSettings:
        if options.known_hosts is None:
            raise UsageError(
                "sftp:// needs a known_hosts file pinning the server's host key "
                "(--known-hosts or sftp.known_hosts); build it with ssh-keyscan and check the "
                "fingerprint out of band",
                code=KNOWN_HOSTS_REQUIRED,
            )
        if options.identity_file is None:
            raise UsageError(
                "sftp:// needs a private key to log in (--identity-file or sftp.identity_file)",
                code=IDENTITY_REQUIRED,
            )
        return cls(
            identity_file=options.identity_file,
            known_hosts=options.known_hosts,
            connect_timeout=_seconds(options.extra, "connect_timeout", 10.0),
            io_timeout=_seconds(options.extra, "io_timeout", 60.0),
            retry_cooldown=_seconds(options.extra, "retry_cooldown", 60.0, allow_zero=True),
        )


def _seconds(extra: dict[str, str], key: str, default: float, *, allow_zero: bool = False) -> float:
    text = extra.get(key)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"{key}={text!r} must be a positive number of seconds", code=BAD_VALUE)
    return value


def load_identity(path: Path) -> PKey:
    """The private key in ``path`` (OpenSSH or PEM format, unencrypted)."""
    from paramiko.pkey import PKey
    from paramiko.ssh_exception import PasswordRequiredException, SSHException

    try:
        return PKey.from_path(path)
    except (PasswordRequiredException, TypeError):  # TypeError: an encrypted PEM key
        problem = "is passphrase-protected; give relay an unencrypted key readable only by it"
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror})"
    except (SSHException, ValueError) as exc:
        problem = f"is not a usable private key ({type(exc).__name__})"
    raise UsageError(f"identity file {path} {problem}", code=IDENTITY_UNREADABLE)


class _Retryable(Exception):
    """A connection attempt failed in a way that another attempt may fix."""


class SftpSession:
    """A lazily opened SFTP connection, reopened after it drops.

    Once a round of connection attempts has failed (``connect_failed``), later calls on the same
    session fail at once with the same error for ``retry_cooldown`` seconds (default 60): an
    import of many files from a dead server costs one round of retries, not one per file, and a
    long-lived daemon still reconnects once the server is back.
    """

    def __init__(
        self, location: SftpLocation, options: TransportOptions, retry: RetryPolicy | None = None
    ) -> None:
        self.location = location
        self.settings = SessionSettings.from_options(options)
        self.retry = retry or RetryPolicy.from_extra(options.extra)
        self._transport: Transport | None = None
        self._sftp: SFTPClient | None = None
        self._gave_up: TransportError | None = None
        self._gave_up_at = 0.0

    def client(self) -> SFTPClient:
        """The open SFTP client, connecting (with retries) when there is none or it dropped."""
        _quiet_paramiko()
        if self._sftp is not None and self.is_alive():
            return self._sftp
        self.close()
        cooling = time.monotonic() - self._gave_up_at < self.settings.retry_cooldown
        if self._gave_up is not None and cooling:  # no new round of retries for every file
            raise TransportError(self._gave_up.message, code=self._gave_up.code)
        known = KnownHosts(self.settings.known_hosts)
        key = load_identity(self.settings.identity_file)
        try:
            self._transport, self._sftp = call_with_retry(
                lambda: self._attempt(known, key), self.retry, lambda e: isinstance(e, _Retryable)
            )
        except _Retryable as exc:
            self._gave_up = TransportError(
                f"cannot connect to {self.location.address} after {self.retry.attempts} "
                f"attempt(s): {exc}",
                code=CONNECT_FAILED,
            )
            self._gave_up_at = time.monotonic()
            raise self._gave_up from None
        return self._sftp

    def is_alive(self) -> bool:
        """The transport runs and the SFTP channel is open and not at end of file.

        When the server side goes away, paramiko's transport thread closes its channels (waking
        a blocked reader) before it marks itself inactive, and a killed ``sftp-server`` shows
        first as end of file on its channel: a reader that saw either can still find the
        transport "active" for a moment, so the channel is the earlier sign.
        """
        transport, sftp = self._transport, self._sftp
        if transport is None or not transport.is_active():
            return False
        channel = getattr(sftp, "sock", None) if sftp is not None else None
        return not (getattr(channel, "closed", False) or getattr(channel, "eof_received", False))

    def close(self) -> None:
        """Close the SFTP channel and the SSH transport; idempotent."""
        sftp, transport = self._sftp, self._transport
        self._sftp = self._transport = None
        with contextlib.suppress(Exception):  # closing a dead connection must not fail
            if sftp is not None:
                sftp.close()
            if transport is not None:
                transport.close()

    def _attempt(self, known: KnownHosts, key: PKey) -> tuple[Transport, SFTPClient]:
        from paramiko.sftp_client import SFTPClient

        transport = self._handshake(known)
        try:
            self._login(transport, key)
            sftp = SFTPClient.from_transport(
                transport, window_size=RECEIVE_WINDOW, max_packet_size=RECEIVE_PACKET
            )
        except BaseException:
            transport.close()
            raise
        if sftp is None:
            transport.close()
            raise _Retryable("the server refused the sftp subsystem")
        channel = sftp.get_channel()
        if channel is not None:
            channel.settimeout(self.settings.io_timeout)
        return transport, sftp

    def _handshake(self, known: KnownHosts) -> Transport:
        from paramiko.ssh_exception import SSHException
        from paramiko.transport import Transport

        loc, timeout = self.location, self.settings.connect_timeout
        try:
            sock = socket.create_connection((loc.host, loc.port), timeout=timeout)
        except OSError as exc:
            raise _Retryable(_describe(exc)) from None
        # SFTP is request/answer: without this, Nagle's algorithm holds a small request until the
        # previous packet is acknowledged, and delayed ACKs make that tens of milliseconds each.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = Transport(sock)
        transport.banner_timeout = transport.auth_timeout = timeout
        _prefer_key_types(transport, known.key_types_for(loc.host, loc.port))
        _prefer_aead_ciphers(transport)
        try:
            transport.start_client(timeout=timeout)
            known.verify(loc.host, loc.port, transport.get_remote_server_key())
        except (SSHException, EOFError, OSError) as exc:
            transport.close()
            raise _Retryable(f"SSH handshake failed: {_describe(exc)}") from None
        except BaseException:
            transport.close()
            raise
        return transport

    def _login(self, transport: Transport, key: PKey) -> None:
        from paramiko.ssh_exception import AuthenticationException, SSHException

        loc = self.location
        try:
            more = transport.auth_publickey(loc.user, key)
        except AuthenticationException:
            raise TransportError(
                f"{loc.address} refused the key {self.settings.identity_file} for user {loc.user}",
                code=AUTH_FAILED,
            ) from None
        except (SSHException, EOFError, OSError) as exc:
            raise _Retryable(f"login interrupted: {_describe(exc)}") from None
        if more:
            raise TransportError(
                f"{loc.address} wants further authentication ({', '.join(more)}) for {loc.user}",
                code=AUTH_FAILED,
            )


def _quiet_paramiko() -> None:
    """Keep paramiko's thread-side log lines (e.g. "Socket exception: Connection reset") off
    stderr when the application configured no logging: our own errors say it in one line.
    Applications that configure logging still receive them."""
    logger = logging.getLogger("paramiko")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())


def _prefer_key_types(transport: Transport, pinned: list[str]) -> None:
    """Ask for the pinned host key types first, so a server with several keys shows a pinned one."""
    options = transport.get_security_options()
    current = list(options.key_types)
    first = [name for name in pinned if name in current]
    options.key_types = first + [name for name in current if name not in first]


# AES-GCM first when the server offers it: encryption and integrity in one call into the
# cryptography library per packet, instead of AES-CTR plus an HMAC computed separately (paramiko
# packs every packet in Python, so each pass over the data counts). OpenSSH offers both.
AEAD_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def _prefer_aead_ciphers(transport: Transport) -> None:
    """Ask for AES-GCM first; the rest of paramiko's list (and its order) follows unchanged."""
    options = transport.get_security_options()
    current = list(options.ciphers)
    first = [name for name in AEAD_CIPHERS if name in current]
    options.ciphers = first + [name for name in current if name not in first]


def _describe(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split()).rstrip(":")
