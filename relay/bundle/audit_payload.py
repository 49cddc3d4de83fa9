"""The payload of the return stream (kind ``audit``): a slice of the agent's unacknowledged
records, specified in ``docs/spec/bundle-v1.md`` §9.

JSON object (UTF-8), version 1, exactly these members::

    {"v": 1,
     "agent": NAME,                         # must equal the (authenticated) sender
     "head": {"seq": N, "hash": HEX},       # the agent's newest record when it exported
     "records": [RECORD, ...],              # docs/audit.md §1, strictly ascending seq, <= head
     "rotation": [ITEM, ...]}               # optional: relay/bundle/rotation_items.py

An export larger than one bundle is split into several bundles with consecutive ``seq``, each
holding a run of records and the same ``head``. ``head`` lets the gateway notice records deleted
from the tail (a head that goes backwards from one bundle to a later one) and a tail never
delivered (records below the head that never arrive).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from relay.audit.chain import GENESIS_HASH, AuditRecord, record_from_dict, record_to_dict
from relay.bundle.limits import DEFAULT_MAX_SECRET_BYTES
from relay.bundle.rotation_items import RotationItem, decode_rotation_items
from relay.errors import MALFORMED, BundleRejected

AUDIT_PAYLOAD_VERSION = 1
PAYLOAD_KEYS = frozenset({"v", "agent", "head", "records"})
OPTIONAL_KEYS = frozenset({"rotation"})  # rotation items ride with their records
HEAD_KEYS = frozenset({"seq", "hash"})
MAX_SAFE_INTEGER = 2**53 - 1
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class AuditPayload:
    """Records sent back by one agent."""

    agent: str
    head_seq: int
    head_hash: str
    records: tuple[AuditRecord, ...]
    rotation: tuple[RotationItem, ...] = field(default=())

    def encode(self) -> bytes:
        """Compact UTF-8 JSON, members sorted (what :func:`payload_frame_size` measures)."""
        return _dump(self, [record_to_dict(r) for r in self.records])


def payload_frame_size(agent: str, head_seq: int, head_hash: str) -> int:
    """Bytes of a payload with no records; each record adds its canonical JSON length plus one
    separator (none for the first)."""
    return len(_dump(AuditPayload(agent, head_seq, head_hash, ()), []))


def _dump(payload: AuditPayload, records: list[dict[str, Any]]) -> bytes:
    doc = {
        "v": AUDIT_PAYLOAD_VERSION,
        "agent": payload.agent,
        "head": {"seq": payload.head_seq, "hash": payload.head_hash},
        "records": records,
    }
    if payload.rotation:
        doc["rotation"] = [item.to_json() for item in payload.rotation]
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode("utf-8")


def decode_audit_payload(
    data: bytes, max_entries: int, max_secret_bytes: int = DEFAULT_MAX_SECRET_BYTES
) -> AuditPayload:
    """Parse a decrypted audit payload strictly (§9); ``malformed`` on anything unexpected. An
    escrowed value may be at most ``max_secret_bytes`` (the receiver's
    ``limits.max_secret_bytes``, as for a value in the secret stream)."""
    doc = _load_json(data)
    if not isinstance(doc, dict) or set(doc) - OPTIONAL_KEYS != PAYLOAD_KEYS:
        raise _malformed("audit payload members are not exactly v, agent, head, records")
    if not _is_int(doc["v"]) or doc["v"] != AUDIT_PAYLOAD_VERSION:
        raise _malformed("audit payload is not v1")
    agent = doc["agent"]
    if not isinstance(agent, str) or not _NAME.fullmatch(agent):
        raise _malformed("audit payload agent is not an identity name")
    head_seq, head_hash = _head(doc["head"])
    records = _records(doc["records"], max_entries, head_seq)
    rotation: tuple[RotationItem, ...] = ()
    if "rotation" in doc:
        rotation = tuple(decode_rotation_items(doc["rotation"], max_entries, max_secret_bytes))
        if any(item.seq > head_seq for item in rotation):
            raise _malformed("a rotation item is past the declared head")
    return AuditPayload(agent, head_seq, head_hash, records, rotation)


def _head(head: object) -> tuple[int, str]:
    if not isinstance(head, dict) or set(head) != HEAD_KEYS:
        raise _malformed("audit payload head is not exactly seq, hash")
    seq, digest = head["seq"], head["hash"]
    if not _is_int(seq) or not 0 <= seq <= MAX_SAFE_INTEGER:
        raise _malformed("audit payload head seq is not a safe integer")
    if not isinstance(digest, str) or not _HASH.fullmatch(digest):
        raise _malformed("audit payload head hash is not 64 lowercase hex digits")
    if seq == 0 and digest != GENESIS_HASH:
        raise _malformed("an empty log's head hash is the genesis hash")
    return seq, digest


def _records(rows: object, max_entries: int, head_seq: int) -> tuple[AuditRecord, ...]:
    if not isinstance(rows, list):
        raise _malformed("audit payload records is not an array")
    if len(rows) > max_entries:
        raise _malformed(f"more than {max_entries} audit records")
    records = tuple(record_from_dict(row) for row in rows)
    previous = 0
    for record in records:
        if record.seq <= previous:
            raise _malformed("audit records are not in strictly ascending seq")
        previous = record.seq
    if previous > head_seq:
        raise _malformed("an audit record is past the declared head")
    return records


def _load_json(data: bytes) -> Any:
    """Strict JSON: UTF-8 only, no NaN or Infinity, no duplicate member names."""
    try:
        text = data.decode("utf-8")  # json.loads(bytes) would also accept UTF-16 and UTF-32
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique)
    except (ValueError, RecursionError):
        raise _malformed("audit payload is not JSON") from None


def _refuse_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _malformed(message: str) -> BundleRejected:
    return BundleRejected(message, code=MALFORMED)
