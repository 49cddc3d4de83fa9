"""Helpers for the intake tests: the agent's audit records and the bad-input forms of issue 9."""

from __future__ import annotations

import json
import struct
from typing import Any

from relay.bundle.envelope import MAGIC
from tests.conftest import Pair


def audit_events(pair: Pair, event_type: str | None = None) -> list[dict[str, Any]]:
    """The agent's audit records (optionally of one type), oldest first."""
    lines = pair.agent("audit", "--json").out.splitlines()
    records = [json.loads(line) for line in lines]
    return [r for r in records if event_type is None or r["type"] == event_type]


def with_header(body: bytes, tail: bytes = b"") -> bytes:
    """Magic, a declared header length, ``body`` as the header, then ``tail``."""
    return MAGIC + struct.pack(">I", len(body)) + body + tail


def bad_length_forms() -> dict[str, bytes]:
    """Every form of a bad length field that once froze the inbox or fooled a scan."""
    deep = b'{"payload_len":' + b"[" * 5000 + b"]" * 5000 + b"}"
    return {
        "infinite-float": with_header(b'{"payload_len":1e999}'),
        "float": with_header(b'{"payload_len":1.5}'),
        "negative": with_header(b'{"payload_len":-5}'),
        "string": with_header(b'{"payload_len":"12"}'),
        "huge": with_header(b'{"payload_len":' + b"9" * 5000 + b"}"),
        "bool": with_header(b'{"payload_len":true}'),
        "deeply-nested": with_header(deep),
        "nested-object": with_header(b'{"a":' * 3000 + b"1" + b"}" * 3000),
        "header-length-huge": MAGIC + struct.pack(">I", 0xFFFFFFFF) + b"{}",
        "truncated-prefix": MAGIC[:5],
        "magic-and-half-length": MAGIC + b"\x00\x00",
        "garbage": bytes(range(256)) * 3,
        "empty": b"",
    }
