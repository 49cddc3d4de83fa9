"""Listening addresses as operators write them (``127.0.0.1:8787``, ``[::1]:8787``)."""

from __future__ import annotations

import ipaddress

from relay.codes import BAD_LISTEN
from relay.errors import UsageError


def parse_listen(text: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT``; ``UsageError`` (``bad_listen``) otherwise.

    The host is an IP literal or ``localhost``; port 0 asks the system for a free port.
    """
    host, sep, port_text = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
        if not sep or not 0 <= port <= 65535:
            raise ValueError
        if host != "localhost":
            ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(
            f"bad listen address {text!r} (use e.g. 127.0.0.1:8787)", code=BAD_LISTEN
        ) from None
    return host, port


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP literal or ``localhost``) is a loopback address."""
    if host == "localhost":
        return True
    return ipaddress.ip_address(host).is_loopback
