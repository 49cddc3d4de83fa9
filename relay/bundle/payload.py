"""The payload of the secret stream (kind ``secrets``), before sealing.

JSON object (UTF-8), version 1::

    {"v": 1,
     "state": "full",                       # the complete set granted to the recipient
     "secrets": [[PATH, VERSION, VALUE_B64, EXPIRES_OR_NULL], ...],
     "tombstones": [[PATH, VERSION], ...],  # removed at the gateway: delete on arrival
     "ack": {"audit_seq": N},               # audit records the gateway holds (return stream)
     "versions": [[PATH, LABEL, ...], ...], # optional: previous/pending (relay.bundle.versions)
     "freshness": [[PATTERN, AGE, BOOL]]}   # optional: fail closed (relay.bundle.policy_rows)

Rows are arrays, not objects, to keep 100k-secret bundles compact and quick to parse. ``state``
``full`` means: after applying, the recipient holds exactly ``secrets`` (anything else is removed).
``state`` ``delta`` (spec §8.3; only in a bundle whose signed header names a ``base``) means:
``secrets`` are upserts, ``tombstones`` are removals, every other path stays as the base left it.
Unknown top-level keys are ignored (room for later kinds: policies, rotation), so an older agent
can apply a newer gateway's bundle; unknown row shapes are ``malformed``. The JSON is strict: UTF-8,
no duplicate member names, no NaN/Infinity; integers are in ``0 .. 2**53 - 1``; a path appears at
most once across ``secrets`` and ``tombstones``.
"""

from __future__ import annotations

import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from relay.bundle.policy_rows import PolicyRow, decode_policy_rows
from relay.bundle.versions import VersionRow, decode_version_rows, encode_version_rows
from relay.errors import MALFORMED, BundleRejected
from relay.paths import MAX_PATH, is_valid_path

PAYLOAD_VERSION = 1
FULL, DELTA = "full", "delta"  # the payload's state
MAX_INT = 2**53 - 1  # as in the header: exact in every JSON implementation
# Paths that is_valid_path accepts, in one regex: 1 to 16 segments of A-Z a-z 0-9 . _ -, none of
# them "." or "..". Only a shortcut: a path it does not match goes to is_valid_path for the verdict.
_FAST_PATH = re.compile(r"(?:(?!\.\.?/)[A-Za-z0-9._-]+/){0,15}(?!\.\.?\Z)[A-Za-z0-9._-]+")
SecretRow = tuple[str, int, str, int | None]  # path, version, value (base64), expires
TombstoneRow = tuple[str, int]


@dataclass
class SecretsPayload:
    """A decoded secret-stream payload. ``secrets`` keeps the base64 values (as encoded);
    after :func:`decode_secrets_payload`, ``values`` holds each row's value as bytes, in the
    same order, decoded once while validating (empty for a payload built to be encoded)."""

    secrets: list[SecretRow]
    tombstones: list[TombstoneRow] = field(default_factory=list)
    audit_ack: int = 0
    versions: list[VersionRow] = field(default_factory=list)  # previous and pending
    policies: list[PolicyRow] = field(default_factory=list)  # freshness rules per pattern
    values: list[bytes] = field(default_factory=list, compare=False, repr=False)
    delta: bool = False  # state "delta": changes since the header's base (spec §8.3)

    def encode(self) -> bytes:
        """The JSON bytes to seal (``versions`` only when there are any: v1 bytes unchanged)."""
        doc: dict[str, Any] = {
            "v": PAYLOAD_VERSION,
            "state": DELTA if self.delta else FULL,
            "secrets": self.secrets,
            "tombstones": self.tombstones,
            "ack": {"audit_seq": self.audit_ack},
        }
        if self.versions:
            doc["versions"] = encode_version_rows(self.versions)
        if self.policies:
            doc["freshness"] = [list(row) for row in self.policies]
        return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def encode_row(row: SecretRow) -> str:
    """One ``secrets`` row as :meth:`SecretsPayload.encode` writes it (for
    :func:`encode_full_payload`)."""
    return json.dumps(row, separators=(",", ":"))


def encode_full_payload(
    secret_rows: list[str],
    tombstones: list[TombstoneRow],
    audit_ack: int,
    versions: list[VersionRow],
    policies: list[PolicyRow],
) -> bytes:
    """:meth:`SecretsPayload.encode` of a full-state payload whose ``secrets`` rows are already
    encoded (:func:`encode_row`): the same bytes. An export pass encodes each row once, however
    many agents it is granted to, instead of once per agent."""
    rest = SecretsPayload([], tombstones, audit_ack, versions, policies).encode()
    head = b'{"v":%d,"state":"%s","secrets":[]' % (PAYLOAD_VERSION, FULL.encode())
    if not rest.startswith(head):  # the layout encode() writes; never otherwise
        raise AssertionError("payload layout changed")
    rows = ",".join(secret_rows).encode("utf-8")
    return head[:-1] + rows + b"]" + rest[len(head) :]


def decode_secrets_payload(
    data: bytes, max_entries: int, max_secret_bytes: int, delta: bool = False
) -> SecretsPayload:
    """Parse and validate a decrypted payload; ``malformed`` on anything unexpected.

    ``delta``: the signed header names a base, so the payload must be a delta (and without a
    base it must be full state). Whether a payload is valid depends on its bytes, the header and
    the limits only, never on the store: every value is checked to be strict base64 of at most
    ``max_secret_bytes`` bytes here.
    """
    doc = _load_json(data)
    if not isinstance(doc, dict) or not _is_int(doc.get("v"), 1) or doc["v"] != PAYLOAD_VERSION:
        raise _malformed("payload is not a v1 document")
    if doc.get("state") != (DELTA if delta else FULL):
        if delta:
            raise _malformed("a bundle with a base does not carry a delta payload")
        raise _malformed("payload is not a v1 full-state document")
    secrets = doc.get("secrets")
    tombstones = doc.get("tombstones", [])
    ack = doc.get("ack", {})
    if not isinstance(secrets, list) or not isinstance(tombstones, list):
        raise _malformed("payload lists are missing")
    if len(secrets) + len(tombstones) > max_entries:
        raise _malformed(f"more than {max_entries} entries")
    max_b64 = 4 * ((max_secret_bytes + 2) // 3)
    rows, values = _secret_rows(secrets, max_b64, max_secret_bytes)
    dead = [_tombstone_row(row) for row in tombstones]
    if len({r[0] for r in rows} | {r[0] for r in dead}) != len(rows) + len(dead):
        raise _malformed("a path appears twice")
    audit_seq = ack.get("audit_seq", 0) if isinstance(ack, dict) else None
    if not _is_int(audit_seq, 0):
        raise _malformed("bad acknowledgement")
    versions: list[VersionRow] = []
    if "versions" in doc:
        current = {r[0]: r[1] for r in rows}
        versions = decode_version_rows(
            doc["versions"], current, {r[0] for r in dead}, max_b64, max_secret_bytes
        )
        if len(rows) + len(dead) + len(versions) > max_entries:
            raise _malformed(f"more than {max_entries} entries")
    policies = decode_policy_rows(doc["freshness"], max_entries) if "freshness" in doc else []
    return SecretsPayload(rows, dead, audit_seq, versions, policies, values, delta)


def decode_value(value_b64: str) -> bytes:
    """A row's value as bytes; ``malformed`` if the base64 is bad."""
    try:
        return binascii.a2b_base64(value_b64, strict_mode=True)
    except (binascii.Error, ValueError):
        raise _malformed("a value is not valid base64") from None


def _secret_rows(
    secrets: list[Any], max_b64: int, max_bytes: int
) -> tuple[list[SecretRow], list[bytes]]:
    """Validate every secret row: one inlined pass for well-formed rows (100k-row bundles spend
    most of their decoding here), :func:`_secret_row` for the exact verdict on any other.
    Returns the rows and their values as bytes (each decoded once, here)."""
    rows: list[SecretRow] = []
    values: list[bytes] = []
    append, keep = rows.append, values.append
    fast_path = _FAST_PATH.fullmatch
    a2b = binascii.a2b_base64
    for row in secrets:
        if type(row) is list and len(row) == 4:
            path, version, value, expires = row
            try:
                ok = (
                    type(path) is str
                    and len(path) <= MAX_PATH
                    and fast_path(path) is not None
                    and type(version) is int
                    and 1 <= version <= MAX_INT
                    and type(value) is str
                    and len(value) <= max_b64
                    and (expires is None or (type(expires) is int and 0 <= expires <= MAX_INT))
                )
                raw = a2b(value, strict_mode=True) if ok else b""
            except (binascii.Error, ValueError):
                ok = False  # bad base64: _secret_row raises the same error as always
            if ok and len(raw) <= max_bytes:
                append((path, version, value, expires))
                keep(raw)
                continue
        checked = _secret_row(row, max_b64, max_bytes)
        append(checked)
        keep(decode_value(checked[2]))
    return rows, values


def _load_json(data: bytes) -> Any:
    """Strict JSON: UTF-8 only, no NaN or Infinity, no duplicate member names."""
    try:
        text = data.decode("utf-8")  # json.loads(bytes) would also accept UTF-16 and UTF-32
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_members)
    except (ValueError, RecursionError):
        raise _malformed("payload is not JSON") from None


def _refuse_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


def _is_int(value: object, low: int) -> TypeGuard[int]:
    """Whether ``value`` is a JSON integer (not a bool or float) in ``low .. MAX_INT``."""
    return type(value) is int and low <= value <= MAX_INT


def _secret_row(row: Any, max_b64: int, max_bytes: int) -> SecretRow:
    if not (isinstance(row, list) and len(row) == 4):
        raise _malformed("a secret row is not [path, version, value, expires]")
    path, version, value, expires = row
    if not (isinstance(path, str) and is_valid_path(path)):
        raise _malformed("a secret row has a bad path")
    if not _is_int(version, 1):
        raise _malformed("a secret row has a bad version")
    if not isinstance(value, str) or len(value) > max_b64 or len(decode_value(value)) > max_bytes:
        raise _malformed("a secret value is missing or over the size cap")
    if expires is not None and not _is_int(expires, 0):
        raise _malformed("a secret row has a bad expiry")
    return (path, version, value, expires)


def _tombstone_row(row: Any) -> TombstoneRow:
    if not (isinstance(row, list) and len(row) == 2):
        raise _malformed("a tombstone row is not [path, version]")
    path, version = row
    if not (isinstance(path, str) and is_valid_path(path)) or not _is_int(version, 1):
        raise _malformed("a tombstone row is bad")
    return (path, version)


def _malformed(message: str) -> BundleRejected:
    return BundleRejected(message, code=MALFORMED)
