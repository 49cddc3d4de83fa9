"""The payload of the return stream (kind ``audit``): the agent's unacknowledged records.

JSON object (UTF-8), version 1::

    {"v": 1,
     "agent": NAME,                         # must equal the (authenticated) sender
     "head": {"seq": N, "hash": HEX},       # the agent's newest record when it exported
     "records": [RECORD, ...],              # docs/audit.md, ascending seq
     "rotation": [ITEM, ...]}               # optional: relay/bundle/rotation_items.py

``head`` lets the gateway notice records deleted from the tail: a later bundle whose head is
below one already seen is a truncation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from relay.audit.chain import AuditRecord, record_from_dict, record_to_dict
from relay.bundle.rotation_items import RotationItem, decode_rotation_items
from relay.errors import MALFORMED, BundleRejected

MAX_ESCROW_BYTES = 1024 * 1024  # the default limits.max_secret_bytes

AUDIT_PAYLOAD_VERSION = 1


@dataclass(frozen=True)
class AuditPayload:
    """Records sent back by one agent."""

    agent: str
    head_seq: int
    head_hash: str
    records: tuple[AuditRecord, ...]
    rotation: tuple[RotationItem, ...] = field(default=())

    def encode(self) -> bytes:
        doc: dict[str, object] = {
            "v": AUDIT_PAYLOAD_VERSION,
            "agent": self.agent,
            "head": {"seq": self.head_seq, "hash": self.head_hash},
            "records": [record_to_dict(r) for r in self.records],
        }
        if self.rotation:
            doc["rotation"] = [item.to_json() for item in self.rotation]
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode("utf-8")


def decode_audit_payload(data: bytes, max_entries: int) -> AuditPayload:
    """Parse a decrypted audit payload strictly; ``malformed`` on anything unexpected."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise BundleRejected("audit payload is not JSON", code=MALFORMED) from None
    if not isinstance(doc, dict) or doc.get("v") != AUDIT_PAYLOAD_VERSION:
        raise BundleRejected("audit payload is not v1", code=MALFORMED)
    records, head, agent = doc.get("records"), doc.get("head"), doc.get("agent")
    if not isinstance(records, list) or not isinstance(agent, str) or not isinstance(head, dict):
        raise BundleRejected("audit payload fields are missing", code=MALFORMED)
    if len(records) > max_entries:
        raise BundleRejected(f"more than {max_entries} audit records", code=MALFORMED)
    head_seq, head_hash = head.get("seq"), head.get("hash")
    if type(head_seq) is not int or head_seq < 0 or not isinstance(head_hash, str):
        raise BundleRejected("audit payload head is bad", code=MALFORMED)
    parsed = tuple(record_from_dict(r) for r in records)
    rotation: tuple[RotationItem, ...] = ()
    if "rotation" in doc:
        rotation = tuple(decode_rotation_items(doc["rotation"], max_entries, MAX_ESCROW_BYTES))
    return AuditPayload(agent, head_seq, head_hash, parsed, rotation)
