"""The one import loop, for both sides: list a source, judge each file, report, maybe remove it.

Used by ``relay agent import`` (secrets), ``relay gateway import`` and ``relay gateway run``
(audit bundles), over every source transport (folders, removable media, SFTP). What differs
between the sides (which pipeline runs, how the result is written, what is audited) is the
:class:`Side`; the loop owns what must be the same everywhere:

- **Skip only after authenticating.** A listed file is first judged from its head (prefix,
  header and signature: a few kilobytes, so SFTP pulls stay cheap). It is skipped without reading
  the rest only when that head verifies against a pinned sender and names a bundle already applied,
  or another recipient. A name, size or date never decides anything.
- **Per-file isolation.** Whatever goes wrong with one file becomes that file's outcome (an
  unexpected exception is a ``malformed`` rejection); the loop goes on. Only a failing transport
  (connection lost, folder unreadable) stops the pass over that source.
- **Removal** (``--delete-after-import``) only of files the side judged consumed for itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, TypeVar

from relay.bundle.envelope import HEAD_BYTES_MAX
from relay.bundle.limits import Limits
from relay.errors import MALFORMED, BundleRejected, TransportError
from relay.transport.base import VANISHED_CODES, Pending, Source, TransportOptions
from relay.transport.select import each_pending

Out = TypeVar("Out")
_log = logging.getLogger("relay.intake")


class Side(Protocol[Out]):
    """One receiving side (agent: secrets; gateway: audit)."""

    @property
    def limits(self) -> Limits: ...

    def judge_head(self, name: str, head: bytes) -> Out | None:
        """An outcome decided from an authenticated head alone (applied, elsewhere), or None."""
        ...

    def import_bytes(self, name: str, data: bytes, listed: bool = False) -> Out:
        """Run the pipeline on a whole file, write what it received, audit; never raises."""
        ...

    def unread(self, name: str, status: str, code: str, message: str) -> Out:
        """The outcome of a file not read (``rejected``: audited; ``skipped``: gone)."""
        ...

    def removable(self, outcome: Out) -> bool:
        """Whether ``--delete-after-import`` may remove the file behind ``outcome``."""
        ...


def import_location(location: str, options: TransportOptions | None, side: Side[Out]) -> list[Out]:
    """Import every bundle at ``location`` (a file, a folder or a transport URL), in name order."""
    return each_pending(
        location, options, lambda source, item: import_item(source, item, options, side)
    )


def import_item(
    source: Source, item: Pending, options: TransportOptions | None, side: Side[Out]
) -> Out:
    """Judge one pending file, then remove it if asked and the side says it was consumed."""
    outcome = _judge(source, item, side)
    if options is not None and options.delete_after_import and side.removable(outcome):
        source.remove(item)
    return outcome


def _judge(source: Source, item: Pending, side: Side[Out]) -> Out:
    try:
        if not item.explicit:
            known = side.judge_head(item.name, fetch_head(source, item))
            if known is not None:
                return known
        data = source.fetch(item, side.limits.max_bundle_bytes)
    except TransportError as exc:
        if exc.code not in VANISHED_CODES:
            raise
        return side.unread(item.name, "skipped", exc.code, "gone before it could be read")
    except BundleRejected as exc:
        return side.unread(item.name, "rejected", exc.code, exc.message)
    except Exception as exc:  # one odd file must not stop the others
        _log.warning("reading %s failed: %s", item.name, type(exc).__name__)
        return side.unread(item.name, "rejected", MALFORMED, f"unreadable ({type(exc).__name__})")
    return side.import_bytes(item.name, data, listed=not item.explicit)


def fetch_head(source: Source, item: Pending) -> bytes:
    """The first bytes of a pending file, enough for its header and signature.

    Uses the source's optional ``fetch_head`` (folder, SFTP: a partial read). A source without
    one gives nothing here, and every file is then read whole and judged by the pipeline."""
    partial: Callable[[Pending, int], bytes] | None = getattr(source, "fetch_head", None)
    if partial is not None:
        return partial(item, HEAD_BYTES_MAX)
    return b""
