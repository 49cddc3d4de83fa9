"""The watched inbox: find bundle files in folders, wait until each is complete, import it once.

A file is handed to the importer only when (1) its size and mtime have not changed for
``settle`` seconds and (2) it is as long as the length its own envelope declares. A file still
being copied is therefore never judged (and never quarantined) on a prefix; a truncated file that
stops changing is judged — and quarantined as ``malformed`` — only after ``give_up`` seconds.
Each file is processed once per content: ``(size, mtime, inode)`` is remembered.

Entries that are not regular files (symlinks, FIFOs, devices, folders named ``*.bundle``) are
refused as ``not_regular_file`` from ``lstat`` alone: never opened, never followed. Reads re-check
that with ``O_NOFOLLOW | O_NONBLOCK`` and ``fstat``. While a file is incomplete only its header is
read (the file's size says the rest), so a large bundle copied slowly is read in full once.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from inner_agent.importer import Outcome
from relay.bundle.envelope import HEAD_BYTES_MAX, declared_length
from relay.errors import MALFORMED, NOT_REGULAR_FILE, BundleRejected, TransportError
from relay.transport.base import BUNDLE_SUFFIX
from relay.transport.folder import read_capped, read_head

SETTLE_SECONDS = 0.3
GIVE_UP_SECONDS = 300.0

COMPLETE, INCOMPLETE, UNKNOWN = "complete", "incomplete", "unknown"

_log = logging.getLogger("relay.inbox")


def completeness(data: bytes, size: int | None = None) -> str:
    """Whether a file of ``size`` bytes (default ``len(data)``) starting with ``data`` is as long
    as its envelope declares.

    The declared length comes from the envelope codec's strict parser
    (:func:`relay.bundle.envelope.declared_length`), never from a looser one. ``incomplete``
    when ``data`` is a prefix of a bundle still shorter than declared; ``complete`` when the
    length matches; ``unknown`` when the bytes are not a valid bundle prefix or the size differs
    (the verifier will say why: that judgement is not this function's business). Never raises.
    """
    size = len(data) if size is None else size
    try:
        declared = declared_length(data)
    except BundleRejected:
        return UNKNOWN
    if declared is None:  # shorter than its own header: a file still arriving
        return INCOMPLETE
    if size < declared:
        return INCOMPLETE
    return COMPLETE if size == declared else UNKNOWN


@dataclass
class _Seen:
    """What is known of one inbox entry."""

    key: tuple[int, int, int, int]  # size, mtime_ns, inode, mode
    since: float  # when this key was first seen (monotonic)
    done: bool = False
    waiting_logged: bool = False


Handler = Callable[[Outcome], None]
Importer = Callable[[str, bytes], Outcome]


class Inbox:
    """Scans inbox folders and hands complete bundle files to ``importer``, once each."""

    def __init__(
        self,
        folders: Iterable[Path],
        importer: Importer,
        report: Handler,
        max_bytes: int,
        settle: float = SETTLE_SECONDS,
        give_up: float = GIVE_UP_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        consume: Iterable[Path] = (),
    ) -> None:
        self.folders = tuple(folders)
        self.consume = frozenset(consume)
        self.importer = importer
        self.report = report
        self.max_bytes = max_bytes
        self.settle = settle
        self.give_up = give_up
        self.clock = clock
        self._seen: dict[Path, _Seen] = {}
        self._missing_logged: set[Path] = set()

    def scan(self, should_stop: Callable[[], bool] = lambda: False) -> float | None:
        """Process what is ready; returns seconds until a file may be ready, or ``None``."""
        present: set[Path] = set()
        wake: float | None = None
        for path, info in self._entries():
            if should_stop():
                break
            present.add(path)
            delay = self._isolated(path, info)
            if delay is not None:
                wake = delay if wake is None else min(wake, delay)
        for gone in set(self._seen) - present:
            if not should_stop():
                del self._seen[gone]  # yanked or removed: nothing was applied from it
        return wake

    def _entries(self) -> list[tuple[Path, os.stat_result]]:
        found: list[tuple[Path, os.stat_result]] = []
        for folder in self.folders:
            try:
                with os.scandir(folder) as entries:
                    names = sorted(e.name for e in entries)
                self._missing_logged.discard(folder)
            except OSError:
                if folder not in self._missing_logged:
                    _log.warning("inbox folder %s is not readable (yet); will retry", folder)
                    self._missing_logged.add(folder)
                continue
            for name in names:
                if not name.endswith(BUNDLE_SUFFIX) or name.startswith("."):
                    continue
                try:
                    found.append((folder / name, os.lstat(folder / name)))
                except OSError:
                    continue
        return found

    def _isolated(self, path: Path, info: os.stat_result) -> float | None:
        """:meth:`_consider` one entry; an unexpected exception is that file's ``malformed``
        rejection (reported, so audited and counted) and the scan goes on."""
        try:
            return self._consider(path, info)
        except Exception as exc:  # one file must never stop the inbox
            _log.warning("inbox: %s failed: %s", path.name, type(exc).__name__)
            seen = self._seen.get(path)
            if seen is not None:
                seen.done = True
            self._done(
                path,
                Outcome(path.name, "rejected", MALFORMED, f"unreadable ({type(exc).__name__})"),
            )
            return None

    def _consider(self, path: Path, info: os.stat_result) -> float | None:
        key = (info.st_size, info.st_mtime_ns, info.st_ino, info.st_mode)
        now = self.clock()
        seen = self._seen.get(path)
        if seen is None or seen.key != key:
            seen = self._seen[path] = _Seen(key, now)
        if seen.done:
            return None
        if not stat.S_ISREG(info.st_mode):
            seen.done = True
            self.report(
                Outcome(path.name, "rejected", NOT_REGULAR_FILE, "not a regular file; not read")
            )
            return None
        if now - seen.since < self.settle:
            return seen.since + self.settle - now
        return self._try(path, seen, now)

    def _try(self, path: Path, seen: _Seen, now: float) -> float | None:
        size = seen.key[0]
        try:
            if size <= self.max_bytes:  # an oversized file is refused by read_capped unread
                state = completeness(read_head(path, HEAD_BYTES_MAX), size)
                if state == INCOMPLETE and now - seen.since < self.give_up:
                    return self._wait(path, seen, now)
            data = read_capped(path, self.max_bytes)
        except BundleRejected as exc:
            seen.done = True
            self._done(path, Outcome(path.name, "rejected", exc.code, exc.message))
            return None
        except (TransportError, OSError):
            return None  # vanished or unreadable between listing and reading: look again later
        if len(data) != size:
            seen.since = now  # still changing under us
            return self.settle
        seen.done = True
        self._done(path, self.importer(path.name, data))
        return None

    def _done(self, path: Path, outcome: Outcome) -> None:
        """Report ``outcome``; in a folder the agent owns (the diode receiver's), remove a file
        judged rejected (its copy is in the bounded quarantine) or duplicate, so a flood sent
        across the diode cannot fill the disk."""
        try:
            self.report(outcome)
        except Exception as exc:  # reporting must not turn into a verdict
            _log.error("inbox: reporting %s failed: %s", path.name, type(exc).__name__)
        if path.parent in self.consume and outcome.status in ("rejected", "duplicate"):
            try:
                path.unlink()
            except OSError as exc:
                _log.warning("cannot remove %s: %s", path.name, exc.strerror)

    def _wait(self, path: Path, seen: _Seen, now: float) -> float:
        """A bundle prefix: wait for the rest (a change wakes us) up to ``give_up``."""
        if not seen.waiting_logged:
            _log.info("waiting for the rest of %s (%d bytes so far)", path.name, seen.key[0])
            seen.waiting_logged = True
        return seen.since + self.give_up - now
