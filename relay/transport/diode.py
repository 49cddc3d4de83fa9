"""Diode destination: ``put`` sends one file over one-way UDP (see :mod:`relay.diode`).

``options.extra`` may carry ``fec_overhead``, ``rate`` (bytes/s) and ``repeat`` as text.
"""

from __future__ import annotations

from relay.diode.arguments import parse_send_options, parse_udp_url
from relay.diode.manifest import safe_name
from relay.diode.sender import OutgoingFile, send_files
from relay.transport.base import TransportOptions


class DiodeDestination:
    """Send each bundle across a data diode to ``udp://HOST:PORT``."""

    def __init__(self, location: str, options: TransportOptions | None = None) -> None:
        self.host, self.port = parse_udp_url(location)
        extra = (options or TransportOptions()).extra
        self.options = parse_send_options(
            extra.get("fec_overhead"), extra.get("rate"), extra.get("repeat")
        )

    def put(self, name: str, data: bytes) -> str:
        send_files([OutgoingFile(name, data)], self.host, self.port, self.options)
        return f"udp://{self.host}:{self.port}/{safe_name(name)}"

    def close(self) -> None:
        return None
