"""The transport interface: put a file, list pending files, fetch one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

BUNDLE_SUFFIX = ".bundle"
# A file listed a moment ago is gone when fetched (media yanked, another reader took it): a skip.
VANISHED_CODES = frozenset({"vanished", "remote_missing"})


@dataclass(frozen=True)
class Pending:
    """A file waiting at a source.

    ``name`` is the base name, ``size`` the size the source reports (``None`` when unknown) and
    ``ref`` a transport-specific locator (a local path, a remote path). ``explicit`` marks a file
    the operator named itself: a bundle for another agent is then an error, not a quiet skip.
    """

    name: str
    ref: str
    size: int | None = None
    explicit: bool = False  # named by the operator, not found by listing a folder


@dataclass(frozen=True)
class TransportOptions:
    """Settings a transport may need; each transport reads what concerns it."""

    identity_file: Path | None = None
    known_hosts: Path | None = None
    delete_after_import: bool = False
    extra: dict[str, str] = field(default_factory=dict)


class Destination(Protocol):
    """Where bundles are written: atomically, so a reader never sees a partial file."""

    def put(self, name: str, data: bytes) -> str:
        """Store ``data`` under the base name ``name``; return where it went, for display."""
        ...

    def close(self) -> None:
        """Release connections; idempotent."""
        ...


class Source(Protocol):
    """Where bundles are read from."""

    def list_pending(self) -> list[Pending]:
        """Files that look like bundles, in a stable order (by name)."""
        ...

    def fetch(self, item: Pending, max_bytes: int) -> bytes:
        """The file's bytes; raises ``BundleRejected`` (``too_large``, ``not_regular_file``)
        before reading more than ``max_bytes``, or ``TransportError``."""
        ...

    # Optional: ``fetch_head(item, limit) -> bytes``, the first ``limit`` bytes only (with the
    # same refusals as ``fetch``), so a file can be judged from its signed header before it is
    # read whole (:func:`relay.intake.fetch_head`). Folder and SFTP sources have it.

    def remove(self, item: Pending) -> None:
        """Delete a consumed file (only used with ``--delete-after-import``)."""
        ...

    def close(self) -> None:
        """Release connections; idempotent."""
        ...
