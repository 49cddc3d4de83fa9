"""An in-memory transport (``memory://NAME``), behind the same interface as the folder, SFTP and
diode transports: for tests and simulations, never for a real gap.

A *medium* is a named, process-wide dict of files (name to bytes). Everything a transport
promises holds: a ``put`` is atomic (a reader sees the whole file or nothing), ``list_pending``
lists ``*.bundle`` names in order, ``fetch`` refuses a file over the cap before copying it
(``too_large``) and reports a file gone since the listing as ``vanished``. Tests can also reach
into a medium to drop, corrupt or withhold files, the way an attacker at the gap would.

Example::

    medium = memory_medium("link")
    open_destination("memory://link").put("a.bundle", b"...")
    assert medium.names() == ["a.bundle"]
"""

from __future__ import annotations

import threading

from relay.codes import BAD_LOCATION, TOO_LARGE, VANISHED
from relay.errors import BundleRejected, TransportError, UsageError
from relay.transport.base import BUNDLE_SUFFIX, Pending

SCHEME = "memory://"
_media: dict[str, MemoryMedium] = {}
_media_lock = threading.Lock()


class MemoryMedium:
    """Files held in memory under base names."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._files: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def write(self, name: str, data: bytes) -> None:
        """Store ``data`` as ``name`` in one step (atomic for readers)."""
        _check_name(name)
        with self._lock:
            self._files[name] = bytes(data)

    def read(self, name: str) -> bytes | None:
        with self._lock:
            return self._files.get(name)

    def delete(self, name: str) -> bool:
        with self._lock:
            return self._files.pop(name, None) is not None

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._files)

    def clear(self) -> None:
        with self._lock:
            self._files.clear()


def memory_medium(name: str) -> MemoryMedium:
    """The process-wide medium called ``name`` (created empty on first use)."""
    with _media_lock:
        medium = _media.get(name)
        if medium is None:
            medium = _media[name] = MemoryMedium(name)
        return medium


def medium_of(location: str) -> MemoryMedium:
    """The medium a ``memory://NAME`` location names."""
    name = location[len(SCHEME) :] if location.lower().startswith(SCHEME) else ""
    if not name or "/" in name:
        raise UsageError(f"bad memory location {location!r} (use memory://NAME)", code=BAD_LOCATION)
    return memory_medium(name)


class MemoryDestination:
    """Writes into a medium."""

    def __init__(self, medium: MemoryMedium) -> None:
        self.medium = medium

    def put(self, name: str, data: bytes) -> str:
        self.medium.write(name, data)
        return f"{SCHEME}{self.medium.name}/{name}"

    def close(self) -> None:
        return None


class MemorySource:
    """Reads ``*.bundle`` files from a medium."""

    def __init__(self, medium: MemoryMedium) -> None:
        self.medium = medium

    def list_pending(self) -> list[Pending]:
        pending = []
        for name in self.medium.names():
            data = self.medium.read(name)
            if name.endswith(BUNDLE_SUFFIX) and data is not None:
                pending.append(Pending(name, name, len(data)))
        return pending

    def fetch(self, item: Pending, max_bytes: int) -> bytes:
        data = self.medium.read(item.ref)
        if data is None:
            raise TransportError(f"{item.name} is gone", code=VANISHED)
        if len(data) > max_bytes:
            raise BundleRejected(
                f"{item.name} is {len(data)} bytes, over the cap of {max_bytes}", code=TOO_LARGE
            )
        return data

    def fetch_head(self, item: Pending, limit: int) -> bytes:
        """The first ``limit`` bytes, for judging a file from its signed head."""
        data = self.medium.read(item.ref)
        if data is None:
            raise TransportError(f"{item.name} is gone", code=VANISHED)
        return data[:limit]

    def remove(self, item: Pending) -> None:
        self.medium.delete(item.ref)

    def close(self) -> None:
        return None


def _check_name(name: str) -> None:
    if not name or "/" in name or "\x00" in name or name in (".", ".."):
        raise ValueError(f"not a base name: {name!r}")
