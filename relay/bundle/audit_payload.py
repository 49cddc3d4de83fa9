"""The payload of the return stream (kind ``audit``): the agent's unacknowledged records.

JSON object (UTF-8), version 1::

    {"v": 1,
     "agent": NAME,                         # must equal the (authenticated) sender
     "head": {"seq": N, "hash": HEX},       # the agent's newest record when it exported
     "records": [RECORD, ...]}              # docs/audit.md, ascending seq

``head`` lets the gateway notice records deleted from the tail: a later bundle whose head is
below one already seen is a truncation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from relay.audit.chain import AuditRecord, record_from_dict, record_to_dict
from relay.errors import MALFORMED, BundleRejected

AUDIT_PAYLOAD_VERSION = 1


@dataclass(frozen=True)
class AuditPayload:
    """Records sent back by one agent."""

    agent: str
    head_seq: int
    head_hash: str
    records: tuple[AuditRecord, ...]

    def encode(self) -> bytes:
        doc = {
            "v": AUDIT_PAYLOAD_VERSION,
            "agent": self.agent,
            "head": {"seq": self.head_seq, "hash": self.head_hash},
            "records": [record_to_dict(r) for r in self.records],
        }
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
    return AuditPayload(agent, head_seq, head_hash, parsed)
