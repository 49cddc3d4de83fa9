"""The service manager's notification protocol (systemd's ``sd_notify(3)``), without libsystemd.

When ``NOTIFY_SOCKET`` names a unix datagram socket (a path, or ``@name`` for the abstract
namespace), :meth:`Notifier.send` writes one datagram of ``KEY=value`` lines to it: ``READY=1``
when the service serves, ``STATUS=…`` for humans (``systemctl status``), ``STOPPING=1``. Keys of
our own start with ``RELAY_`` (systemd ignores keys it does not know). Unset, nothing is sent.
Sending never fails the service: an error is reported as ``False``. Values carry no secret: they
are the same facts the audit records.

Example::

    notifier = Notifier.from_environ()
    notifier.send(READY="1", STATUS="serving")
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

ENV = "NOTIFY_SOCKET"
MAX_MESSAGE = 4096  # systemd reads at most a pipe buffer's worth per datagram


def encode(fields: dict[str, str]) -> bytes:
    """``KEY=value`` lines; ``ValueError`` for a key that is not ``A-Z0-9_`` or a value with a
    newline (it would forge another key)."""
    lines = []
    for key, value in fields.items():
        if not key or not all(c.isupper() or c.isdigit() or c == "_" for c in key):
            raise ValueError(f"bad notification key {key!r}")
        if "\n" in value:
            raise ValueError(f"a newline in the value of {key}")
        lines.append(f"{key}={value}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def socket_address(text: str | None) -> str | bytes | None:
    """The address ``NOTIFY_SOCKET`` names, or ``None`` when it is unset or unusable."""
    if not text:
        return None
    if text.startswith("@"):
        return b"\0" + text[1:].encode("utf-8")
    return text if text.startswith("/") else None


class Notifier:
    """Sends notifications to one socket (or nowhere)."""

    def __init__(self, address: str | bytes | None) -> None:
        self.address = address

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """The notifier ``NOTIFY_SOCKET`` asks for; the variable is removed so that children
        (exec, hooks) do not inherit it."""
        env = os.environ if environ is None else environ
        return cls(socket_address(env.pop(ENV, None)))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str) -> bool:
        """Send one notification; ``True`` if it was sent."""
        if self.address is None:
            return False
        data = encode(fields)
        if len(data) > MAX_MESSAGE:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(data, self.address)
        except OSError:
            return False
        return True
