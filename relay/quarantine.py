"""Quarantine: a private copy of each rejected bundle, for the operator to examine, within a cap.

Only bytes that were read within the size cap are kept; an oversized or non-regular file is
recorded by the caller (audit), never copied. Files are 0600 in ``HOME/quarantine`` (0700), named
``UTC-TIME.UNIQUE.REASON.ORIGINAL-NAME`` with the original name reduced to a safe character set;
the unique part (nanoseconds and random hex) means two rejections in the same second never
overwrite each other, and names sort oldest first.

The folder holds at most ``import.quarantine_bytes``: the oldest copies are dropped to make room
for a new one. A rejected file larger than the whole cap is not copied: a small
``….meta.json`` record (name, reason, size, SHA-256, time) stands for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import time
from pathlib import Path

from relay.transport.folder import write_atomic

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
META_SUFFIX = ".meta.json"


def safe_name(name: str) -> str:
    """``name`` without path, leading dots or unusual characters (at most 100 characters)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base).lstrip(".")[:100]
    return cleaned or "unnamed"


class Quarantine:
    """The quarantine folder of one home, bounded to ``cap`` bytes."""

    def __init__(self, folder: Path, cap: int) -> None:
        self.folder = folder
        self.cap = cap

    def keep(self, name: str, data: bytes, reason: str, now: float | None = None) -> Path:
        """Store ``data`` (or, past the cap, a record of it); returns what was written."""
        base = _base_name(name, reason, now)
        if len(data) <= self.cap:
            self._make_room(len(data))
            return write_atomic(self.folder, base, data)
        record = {
            "file": name,
            "reason": reason,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "time": int(time.time() if now is None else now),
            "kept": False,
        }
        body = json.dumps(record, sort_keys=True).encode("utf-8") + b"\n"
        self._make_room(len(body))
        return write_atomic(self.folder, base + META_SUFFIX, body)

    def used(self) -> int:
        """Bytes held now."""
        return sum(size for _, size in self._entries())

    def _make_room(self, incoming: int) -> None:
        entries = self._entries()
        total = sum(size for _, size in entries)
        for path, size in entries:  # oldest first
            if total + incoming <= self.cap:
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            total -= size

    def _entries(self) -> list[tuple[Path, int]]:
        """Regular files in the folder, oldest first: ``(path, size)``."""
        found: list[tuple[int, str, Path, int]] = []
        try:
            with os.scandir(self.folder) as entries:
                for entry in entries:
                    if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                        continue
                    info = entry.stat(follow_symlinks=False)
                    found.append((info.st_mtime_ns, entry.name, Path(entry.path), info.st_size))
        except FileNotFoundError:
            return []
        return [(path, size) for _, _, path, size in sorted(found)]


def keep(folder: Path, name: str, data: bytes, reason: str, now: float | None = None) -> Path:
    """Store ``data`` in quarantine with no cap (prefer :class:`Quarantine`)."""
    return write_atomic(folder, _base_name(name, reason, now), data)


def _base_name(name: str, reason: str, now: float | None) -> str:
    at = time.time_ns() if now is None else int(now * 1e9)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(at // 1_000_000_000))
    unique = f"{at % 1_000_000_000:09d}{secrets.token_hex(3)}"  # sorts by time within a second
    return f"{stamp}.{unique}.{safe_name(reason)}.{safe_name(name)}"
