"""Pick a transport from a location string."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from relay.errors import UsageError
from relay.transport.base import Destination, Pending, Source, TransportOptions

T = TypeVar("T")


def open_destination(location: str, options: TransportOptions | None = None) -> Destination:
    """A destination for ``location``: a folder path, ``sftp://...`` or ``udp://...``."""
    options = options or TransportOptions()
    scheme = _scheme(location)
    if scheme == "":
        from relay.transport.folder import FolderDestination

        return FolderDestination(Path(location))
    if scheme == "sftp":
        from relay.transport.sftp import SftpDestination  # type: ignore[import-not-found,unused-ignore]

        return SftpDestination(location, options)  # type: ignore[no-any-return,unused-ignore]
    if scheme == "udp":
        from relay.transport.diode import DiodeDestination  # type: ignore[import-not-found,unused-ignore]

        return DiodeDestination(location, options)  # type: ignore[no-any-return,unused-ignore]
    if scheme == "memory":
        from relay.transport.memory import MemoryDestination, medium_of

        return MemoryDestination(medium_of(location))
    raise UsageError(f"unsupported destination {location!r} (use a folder, sftp:// or udp://)")


def open_source(location: str, options: TransportOptions | None = None) -> Source:
    """A source for ``location``: a folder or file path, or ``sftp://...``."""
    options = options or TransportOptions()
    scheme = _scheme(location)
    if scheme == "":
        from relay.transport.folder import FolderSource

        return FolderSource(Path(location))
    if scheme == "sftp":
        from relay.transport.sftp import SftpSource  # type: ignore[import-not-found,unused-ignore]

        return SftpSource(location, options)  # type: ignore[no-any-return,unused-ignore]
    if scheme == "memory":
        from relay.transport.memory import MemorySource, medium_of

        return MemorySource(medium_of(location))
    raise UsageError(f"unsupported source {location!r} (use a folder or sftp://)")


def each_pending(
    location: str, options: TransportOptions | None, handle: Callable[[Source, Pending], T]
) -> list[T]:
    """Open ``location`` as a source, ``handle`` every pending file in order, close it."""
    source = open_source(location, options)
    try:
        return [handle(source, item) for item in source.list_pending()]
    finally:
        source.close()


def _scheme(location: str) -> str:
    head, sep, _ = location.partition("://")
    if not sep:
        return ""
    return head.lower()
