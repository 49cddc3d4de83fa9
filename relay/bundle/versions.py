"""Labelled versions in the secret stream: ``previous`` and ``pending`` next to ``current``.

The payload's ``secrets`` rows are the ``current`` versions (what a v1 agent serves). A newer
gateway adds the optional top-level member ``versions`` (``docs/spec/bundle-v1.md`` §8.1)::

    "versions": [[PATH, LABEL, VERSION, VALUE_B64, EXPIRES_OR_NULL, AT_OR_NULL, OVERLAP_OR_NULL]]

- ``LABEL`` ``pending``: a pre-staged successor. ``AT`` (required) is its ``activates_at``: from
  that second on (judged with the receiver's clock) it is ``current`` and the version it replaces
  becomes ``previous`` for ``OVERLAP`` seconds (``null``: until the next bundle says otherwise).
  ``VERSION`` is above the current one.
- ``LABEL`` ``previous``: the version ``current`` replaced, kept while old and new overlap. ``AT``
  is when the overlap ends (``null``: until the next bundle); ``OVERLAP`` is ``null``. It needs a
  ``current`` row of the same path with a higher version.

Older agents ignore the member (unknown top-level members are ignored), so a v1 payload stays
readable both ways. This module is pure: rows in, validated rows out, ``malformed`` otherwise.
"""

from __future__ import annotations

import binascii
from typing import Any

from relay.errors import MALFORMED, BundleRejected
from relay.paths import is_valid_path

PENDING = "pending"
PREVIOUS = "previous"
CURRENT = "current"
LABELS = (CURRENT, PREVIOUS, PENDING)
MAX_INT = 2**53 - 1

# path, label, version, value (base64), expires, at (activates_at | until), overlap
VersionRow = tuple[str, str, int, str, int | None, int | None, int | None]


def decode_version_rows(
    raw: Any,
    current: dict[str, int],
    tombstoned: set[str],
    max_b64: int,
    max_bytes: int,
) -> list[VersionRow]:
    """Validate the ``versions`` member against the payload's current rows (path -> version)."""
    if not isinstance(raw, list):
        raise _malformed("versions is not an array")
    rows = [_row(item, max_b64, max_bytes) for item in raw]
    seen: set[tuple[str, str]] = set()
    for path, label, version, _value, _expires, _at, _overlap in rows:
        if (path, label) in seen:
            raise _malformed("a path has two versions with one label")
        seen.add((path, label))
        if path in tombstoned:
            raise _malformed("a removed path has a labelled version")
        held = current.get(path)
        if label == PREVIOUS and (held is None or version >= held):
            raise _malformed("a previous version needs a newer current version")
        if label == PENDING and held is not None and version <= held:
            raise _malformed("a pending version must be newer than the current one")
    return rows


def encode_version_rows(rows: list[VersionRow]) -> list[list[Any]]:
    """The JSON arrays of ``rows``."""
    return [list(row) for row in rows]


def _row(item: Any, max_b64: int, max_bytes: int) -> VersionRow:
    if not (isinstance(item, list) and len(item) == 7):
        raise _malformed("a version row is not [path, label, version, value, expires, at, overlap]")
    path, label, version, value, expires, at, overlap = item
    if not (isinstance(path, str) and is_valid_path(path)):
        raise _malformed("a version row has a bad path")
    if label not in (PENDING, PREVIOUS):
        raise _malformed("a version row has an unknown label")
    if not _is_int(version, 1):
        raise _malformed("a version row has a bad version")
    if not isinstance(value, str) or len(value) > max_b64 or _decoded_len(value) > max_bytes:
        raise _malformed("a version value is missing or over the size cap")
    if expires is not None and not _is_int(expires, 0):
        raise _malformed("a version row has a bad expiry")
    if label == PENDING:
        if not _is_int(at, 0):
            raise _malformed("a pending version needs activates_at")
        if overlap is not None and not _is_int(overlap, 0):
            raise _malformed("a pending version has a bad overlap")
    else:
        if at is not None and not _is_int(at, 0):
            raise _malformed("a previous version has a bad end of overlap")
        if overlap is not None:
            raise _malformed("a previous version has no overlap")
    return (path, label, version, value, expires, at, overlap)


def _decoded_len(value: str) -> int:
    try:
        return len(binascii.a2b_base64(value, strict_mode=True))
    except (binascii.Error, ValueError):
        raise _malformed("a version value is not valid base64") from None


def _is_int(value: object, low: int) -> bool:
    return type(value) is int and low <= value <= MAX_INT


def _malformed(message: str) -> BundleRejected:
    return BundleRejected(message, code=MALFORMED)
