"""Durations as operators write them: ``30s``, ``15m``, ``24h``, ``7d`` (or a sum: ``1d12h``)."""

from __future__ import annotations

import re

from relay.codes import BAD_DURATION
from relay.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)([smhdw])")


def parse_duration(text: str) -> int:
    """Seconds in ``text``; raises ``UsageError`` (code ``bad_duration``) on anything else.

    >>> parse_duration("1d12h")
    129600
    """
    cleaned = text.strip().lower()
    if not cleaned or _PART.sub("", cleaned):
        raise UsageError(f"bad duration {text!r} (use e.g. 30s, 15m, 24h, 7d)", code=BAD_DURATION)
    total = sum(int(n) * _UNITS[u] for n, u in _PART.findall(cleaned))
    if total <= 0:
        raise UsageError(f"duration {text!r} must be positive", code=BAD_DURATION)
    return total


def format_duration(seconds: int) -> str:
    """The shortest exact form of ``seconds``: ``format_duration(90) == "1m30s"``."""
    if seconds <= 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
