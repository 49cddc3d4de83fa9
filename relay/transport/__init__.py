"""Transports move bundle files across the gap; they never look inside a bundle.

One small interface (:mod:`relay.transport.base`): a :class:`~relay.transport.base.Destination`
puts a file atomically, a :class:`~relay.transport.base.Source` lists pending files and fetches
one within a size cap. :func:`open_destination` and :func:`open_source` pick the implementation
from a location string: a folder path, ``sftp://...`` or ``udp://...``; and, for tests and
simulations, ``memory://NAME`` (:mod:`relay.transport.memory`).
"""

from relay.transport.base import Destination, Pending, Source, TransportOptions
from relay.transport.select import each_pending, open_destination, open_source

__all__ = [
    "Destination",
    "Pending",
    "Source",
    "TransportOptions",
    "each_pending",
    "open_destination",
    "open_source",
]
