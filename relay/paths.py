"""Secret paths (``db/plant7/password``) and the glob patterns that grant them.

A path is 1 to 16 segments of ``A-Z a-z 0-9 . _ -`` joined by ``/``, none of them ``.`` or ``..``,
at most 256 characters. In a pattern, ``*`` matches within one segment, ``**`` matches any number
of whole segments (including none) and ``?`` one character: ``db/*/password``, ``db/**``.
"""

from __future__ import annotations

import re
from functools import lru_cache

from relay.codes import BAD_PATH, BAD_PATTERN
from relay.errors import UsageError

MAX_PATH = 256
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")
_PATTERN_SEGMENT = re.compile(r"^[A-Za-z0-9._\-*?]+$")


def is_valid_path(path: str) -> bool:
    """Whether ``path`` is a well-formed secret path."""
    if not 0 < len(path) <= MAX_PATH:
        return False
    segments = path.split("/")
    return len(segments) <= 16 and all(
        _SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments
    )


def check_path(path: str) -> str:
    """``path`` if valid, else ``UsageError`` (``bad_path``)."""
    if not is_valid_path(path):
        raise UsageError(
            f"invalid secret path {path!r}: use segments of A-Z a-z 0-9 . _ - joined by /",
            code=BAD_PATH,
        )
    return path


def check_pattern(pattern: str) -> str:
    """``pattern`` if it is a valid grant pattern, else ``UsageError`` (``bad_pattern``)."""
    segments = pattern.split("/")
    ok = 0 < len(pattern) <= MAX_PATH and all(
        _PATTERN_SEGMENT.fullmatch(s) and s not in (".", "..") and ("**" not in s or s == "**")
        for s in segments
    )
    if not ok:
        raise UsageError(f"invalid pattern {pattern!r}", code=BAD_PATTERN)
    return pattern


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    for index, segment in enumerate(pattern.split("/")):
        last = index == len(pattern.split("/")) - 1
        if segment == "**":
            parts.append(".*" if last else "(?:[^/]+/)*")
            continue
        body = "".join(
            "[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch) for ch in segment
        )
        parts.append(body if last else body + "/")
    return re.compile("".join(parts) + r"\Z")


def matches(pattern: str, path: str) -> bool:
    """Whether ``path`` is granted by ``pattern``."""
    return _compile(pattern).match(path) is not None


def matches_any(patterns: list[str], path: str) -> bool:
    """Whether any of ``patterns`` grants ``path``."""
    return any(matches(p, path) for p in patterns)


def grant_matcher(patterns: list[str]) -> re.Pattern[str] | None:
    """One compiled regex matching any of ``patterns`` (``None`` when there are none)."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{_compile(p).pattern})" for p in sorted(set(patterns))))
