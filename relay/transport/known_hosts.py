"""Host key pinning against an OpenSSH known_hosts file: never trust on first use.

Lines are parsed with paramiko's :class:`~paramiko.hostkeys.HostKeyEntry` (plain and hashed host
names, ``[host]:port`` for ports other than 22); a line it cannot read pins nothing.
``@revoked`` lines are honoured: a revoked key is refused even if another line lists it.
``@cert-authority`` lines are not supported (ignored): pin the host keys themselves. The check
runs after key exchange and before user authentication, so nothing about the user, and no byte of
a bundle, reaches an unverified server.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import TYPE_CHECKING

from relay.codes import (
    HOST_KEY_MISMATCH,
    HOST_KEY_REVOKED,
    HOST_KEY_UNKNOWN,
    KNOWN_HOSTS_UNREADABLE,
)
from relay.errors import TransportError, UsageError

if TYPE_CHECKING:
    from paramiko.hostkeys import HostKeys
    from paramiko.pkey import PKey


_RSA_SIGNATURES = ("rsa-sha2-512", "rsa-sha2-256")


def host_entry_name(host: str, port: int) -> str:
    """How OpenSSH names ``host:port`` in known_hosts."""
    return host if port == 22 else f"[{host}]:{port}"


class KnownHosts:
    """The pinned keys of one known_hosts file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise UsageError(
                f"cannot read known_hosts file {path}: {exc.strerror}",
                code=KNOWN_HOSTS_UNREADABLE,
            ) from None
        self._keys = _parse(text)
        self._revoked = _revoked_blobs(text)

    def key_types_for(self, host: str, port: int) -> list[str]:
        """Host key algorithms pinned for ``host:port``, to ask the server for those first."""
        entry = self._keys.lookup(host_entry_name(host, port))
        if entry is None:
            return []
        types: list[str] = []
        for name in entry:
            types.extend(_RSA_SIGNATURES if name == "ssh-rsa" else (name,))
        return types

    def verify(self, host: str, port: int, key: PKey) -> None:
        """Return if ``key`` is pinned for ``host:port``; raise ``TransportError`` otherwise."""
        name = host_entry_name(host, port)
        offered = f"{key.get_name()} {key.fingerprint}"
        if key.asbytes() in self._revoked:
            raise TransportError(
                f"{name} offered a revoked host key ({offered}) listed in {self.path}",
                code=HOST_KEY_REVOKED,
            )
        entry = self._keys.lookup(name)
        if not entry:
            raise TransportError(
                f"{name} is not in {self.path}; the server offered {offered}: "
                "compare it with the server's fingerprint out of band before adding it",
                code=HOST_KEY_UNKNOWN,
            )
        if any(known.asbytes() == key.asbytes() for known in entry.values()):
            return
        raise TransportError(
            f"host key of {name} does not match {self.path}: the server offered {offered}; "
            "possible man-in-the-middle, or the server's key changed",
            code=HOST_KEY_MISMATCH,
        )


def _parse(text: str) -> HostKeys:
    """Plain host lines only: paramiko's own ``load`` raises on ``@`` marker lines."""
    from paramiko.hostkeys import HostKeyEntry, HostKeys

    keys = HostKeys()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", "@")):
            continue
        try:
            entry = HostKeyEntry.from_line(line, number)
        except Exception:  # noqa: S112 (a line paramiko cannot read pins nothing)
            continue
        if entry is not None and entry.key is not None:
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)
    return keys


def _revoked_blobs(text: str) -> set[bytes]:
    blobs: set[bytes] = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0] == "@revoked":
            try:
                blobs.add(base64.b64decode(fields[3], validate=True))
            except (binascii.Error, ValueError):
                continue
    return blobs
