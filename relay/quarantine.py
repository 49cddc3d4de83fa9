"""Quarantine: a private copy of each rejected bundle, for the operator to examine.

Only bytes that were read within the size cap are kept; an oversized or non-regular file is
recorded by the caller, never copied. Files are 0600 in ``HOME/quarantine`` (0700), named
``UTC-TIME.REASON.ORIGINAL-NAME`` with the original name reduced to a safe character set.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from relay.transport.folder import write_atomic

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(name: str) -> str:
    """``name`` without path, leading dots or unusual characters (at most 100 characters)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base).lstrip(".")[:100]
    return cleaned or "unnamed"


def keep(folder: Path, name: str, data: bytes, reason: str, now: float | None = None) -> Path:
    """Store ``data`` in quarantine; returns the copy's path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return write_atomic(folder, f"{stamp}.{reason}.{safe_name(name)}", data)
