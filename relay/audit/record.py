"""The audit record: its fields, its canonical encoding, its hash and its strict JSON codec.

Pure: values in, values out. No clock, no files. The format is specified in ``docs/audit.md``;
this module is its reference implementation.

Format decisions (stable, part of the hash):

- ``time`` is UTC as RFC 3339 with exactly six fraction digits and ``Z``
  (``2026-11-29T10:13:55.123456Z``): readable, sortable as text, usable as an RFC 5424 TIMESTAMP.
- ``mono`` is an int of nanoseconds from the writer's monotonic clock; only comparable between
  records of the same ``session_id``.
- ``hash`` is the lowercase hex SHA-256 of the canonical JSON (sorted keys, no spaces,
  ``ensure_ascii``, no NaN) of every other member, ``prev_hash`` included.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from relay.errors import MALFORMED, BundleRejected
from relay.frozen import frozen

FieldValue = str | int | float | bool | None

GENESIS_HASH = "0" * 64
MAX_RECORD_BYTES = 64 * 1024
MAX_FIELDS = 32
MAX_FIELD_CHARS = 4096

RECORD_KEYS = frozenset(
    {"seq", "session_id", "time", "mono", "type", "fields", "prev_hash", "hash"}
)
# Names the SIEM formats use next to the fields, flat: a field may never take one of them.
RESERVED_FIELD_NAMES = RECORD_KEYS | {"agent"}

_TYPE_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
_FIELD_NAME_RE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z][a-z0-9]*)*")
_MAX_FIELD_NAME_CHARS = 32  # RFC 5424 PARAM-NAME limit
_SESSION_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_HASH_RE = re.compile(r"[0-9a-f]{64}")
_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_MAX_TYPE_CHARS = 32  # RFC 5424 MSGID limit: the type is sent as the MSGID
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)


@frozen
class AuditRecord:
    """One audit fact. Build with :func:`relay.audit.chain.next_record`, never by hand."""

    seq: int
    session_id: str
    time: str
    mono: int
    type: str
    fields: Mapping[str, FieldValue]
    prev_hash: str
    hash: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))


def format_time(now: datetime) -> str:
    """``now`` (timezone-aware) as the record's UTC text form."""
    if now.tzinfo is None:
        raise ValueError("audit time must be timezone-aware")
    utc = now.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def parse_time(text: str) -> datetime:
    """The record's time text back to an aware ``datetime``; ``ValueError`` if not canonical."""
    if not _TIME_RE.fullmatch(text):
        raise ValueError("time is not YYYY-MM-DDTHH:MM:SS.ffffffZ")
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)


def _body(record: AuditRecord) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "session_id": record.session_id,
        "time": record.time,
        "mono": record.mono,
        "type": record.type,
        "fields": dict(record.fields),
        "prev_hash": record.prev_hash,
    }


def canonical_bytes(obj: Mapping[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, no spaces, ASCII only, NaN refused."""
    return _CANONICAL.encode(obj).encode("ascii")


def hash_body(record: AuditRecord) -> bytes:
    """The exact bytes :func:`compute_hash` hashes (every member except ``hash``)."""
    return canonical_bytes(_body(record))


def compute_hash(record: AuditRecord) -> str:
    """What ``record.hash`` must be."""
    return hashlib.sha256(hash_body(record)).hexdigest()


def record_to_dict(record: AuditRecord) -> dict[str, Any]:
    """Every member as plain JSON values (``fields`` as a dict)."""
    body = _body(record)
    body["hash"] = record.hash
    return body


def record_to_json(record: AuditRecord) -> str:
    """One line of canonical JSON holding the whole record, ``hash`` included."""
    return canonical_bytes(record_to_dict(record)).decode("ascii")


def record_from_json(data: str | bytes) -> AuditRecord:
    """Parse one record strictly; anything off is ``BundleRejected(code="malformed")``.

    The hash is *not* checked here: a record whose hash does not recompute is still a record, and
    :func:`relay.audit.chain.verify_chain` reports it as ``hash_mismatch``.
    """
    if len(data) > MAX_RECORD_BYTES:
        raise _malformed("audit record too large")
    try:
        obj = json.loads(data, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _malformed(f"audit record is not JSON: {exc}") from None
    return record_from_dict(obj)


def record_from_dict(obj: object) -> AuditRecord:
    """Build a record from parsed JSON, with the same strict checks as :func:`record_from_json`."""
    if not isinstance(obj, dict):
        raise _malformed("audit record is not a JSON object")
    keys = set(obj)
    if keys != RECORD_KEYS:
        missing, unknown = sorted(RECORD_KEYS - keys), sorted(keys - RECORD_KEYS)
        raise _malformed(f"audit record keys: missing {missing}, unknown {unknown}")
    try:
        _check_members(obj)
        check_fields(obj["fields"])
    except (ValueError, TypeError) as exc:
        raise _malformed(f"audit record: {exc}") from None
    return AuditRecord(**obj)


def _check_members(obj: dict[str, Any]) -> None:
    seq, mono = obj["seq"], obj["mono"]
    if not _is_int(seq) or seq < 1:
        raise ValueError("seq must be an integer >= 1")
    if not _is_int(mono) or mono < 0:
        raise ValueError("mono must be an integer >= 0")
    check_session_id(obj["session_id"])
    check_type(obj["type"])
    if not isinstance(obj["time"], str):
        raise TypeError("time must be a string")
    parse_time(obj["time"])
    for key in ("prev_hash", "hash"):
        if not isinstance(obj[key], str) or not _HASH_RE.fullmatch(obj[key]):
            raise ValueError(f"{key} must be 64 lowercase hex digits")


def check_type(value: object) -> None:
    """An event type is a stable dotted lowercase name of at most 32 characters."""
    if not isinstance(value, str) or len(value) > _MAX_TYPE_CHARS:
        raise ValueError("type must be a string of at most 32 characters")
    if not _TYPE_RE.fullmatch(value):
        raise ValueError("type must be a dotted lowercase name like 'bundle.applied'")


def check_session_id(value: object) -> None:
    """A session id is 1-64 characters of ``A-Za-z0-9._:-``."""
    if not isinstance(value, str) or not _SESSION_RE.fullmatch(value):
        raise ValueError("session_id must be 1-64 characters of A-Za-z0-9._:-")


def check_fields(fields: object) -> None:
    """Structure of ``fields``: names, scalar types, sizes. Says nothing about secrecy.

    Error messages name the offending key, never its value.
    """
    if not isinstance(fields, Mapping):
        raise TypeError("fields must be an object")
    if len(fields) > MAX_FIELDS:
        raise ValueError(f"at most {MAX_FIELDS} fields")
    for name, value in fields.items():
        if not isinstance(name, str) or not _is_field_name(name):
            raise ValueError(
                "field names are snake_case words (a-z0-9, each word starting with a "
                "letter), at most 32 characters"
            )
        if name in RESERVED_FIELD_NAMES:
            raise ValueError(f"field name {name!r} is reserved")
        _check_scalar(name, value)


def _check_scalar(name: str, value: object) -> None:
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"field {name!r} is not a finite number")
        return
    if not isinstance(value, str):
        raise TypeError(f"field {name!r} must be str, int, float, bool or null")
    if len(value) > MAX_FIELD_CHARS:
        raise ValueError(f"field {name!r} is longer than {MAX_FIELD_CHARS} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"field {name!r} is not valid Unicode text") from None


@functools.lru_cache(maxsize=1024)
def _is_field_name(name: str) -> bool:
    return len(name) <= _MAX_FIELD_NAME_CHARS and _FIELD_NAME_RE.fullmatch(name) is not None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def _malformed(message: str) -> BundleRejected:
    return BundleRejected(message, code=MALFORMED)
