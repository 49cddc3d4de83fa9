"""In-memory bundle kit for tests: fixed keys, a sealing helper and raw-header signing.

Everything is deterministic (keys from labels, fixed nonce), so security scenarios are cheap to
write, in the spirit of python-tuf's repository simulator.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Any

from relay import crypto
from relay.bundle.envelope import MAGIC, SIGNING_CONTEXT
from relay.bundle.limits import Limits
from relay.bundle.payload import SecretsPayload
from relay.bundle.receive import MemoryStreams, Received, receive_secrets
from relay.bundle.seal import seal_bundle
from relay.bundle.verify import HighWater, Trust, VerifiedBundle
from relay.bundle.verify import verify_bundle as _verify
from relay.identity import PublicIdentity, identity_of

NOW = 1_800_000_000
NONCE = bytes(range(24))
MAX_BYTES = 1024 * 1024
MAX_ENTRIES = 1000
MAX_SECRET_BYTES = 1024
LIMITS = Limits(MAX_BYTES, MAX_SECRET_BYTES, MAX_ENTRIES)


def keys_for(label: str) -> crypto.KeyPair:
    """A fixed key pair derived from ``label`` (tests only)."""
    return crypto.KeyPair(
        hashlib.sha256(f"{label}/sign".encode()).digest(),
        hashlib.sha256(f"{label}/box".encode()).digest(),
    )


GATEWAY_KEYS = keys_for("gateway")
AGENT_KEYS = keys_for("agent")
ROGUE_KEYS = keys_for("rogue")
OTHER_AGENT_KEYS = keys_for("other-agent")
GATEWAY = identity_of("gateway", "hq", GATEWAY_KEYS)
AGENT = identity_of("agent", "plant7", AGENT_KEYS)
ROGUE = identity_of("gateway", "hq", ROGUE_KEYS)  # same name, other key
OTHER_AGENT = identity_of("agent", "plant8", OTHER_AGENT_KEYS)
TRUST = Trust(AGENT, {GATEWAY.key_id: GATEWAY})

PAYLOAD = SecretsPayload(
    secrets=[("db/plant7/password", 3, "aHVudGVyMg==", None), ("tls/key", 1, "AAEC", NOW + 99)],
    tombstones=[("old/thing", 2)],
    audit_ack=7,
)


@dataclass(frozen=True)
class BundleSpec:
    """Everything that goes into one bundle; change a field to make a scenario."""

    seq: int = 5
    created: int = NOW - 60
    expires: int = NOW + 3600
    kind: str = "secrets"
    sender: PublicIdentity = GATEWAY
    keys: crypto.KeyPair = GATEWAY_KEYS
    recipient: PublicIdentity = AGENT
    plaintext: bytes = field(default_factory=PAYLOAD.encode)


def make_bundle(spec: BundleSpec | None = None, **changes: Any) -> bytes:
    """The bundle bytes for ``spec`` with ``changes`` applied."""
    s = spec or BundleSpec()
    if changes:
        s = BundleSpec(**{**s.__dict__, **changes})
    return seal_bundle(
        kind=s.kind,
        sender=s.sender,
        keys=s.keys,
        recipient=s.recipient,
        seq=s.seq,
        created=s.created,
        expires=s.expires,
        plaintext=s.plaintext,
        nonce=NONCE,
    )


def sign_raw(body: bytes, keys: crypto.KeyPair, payload: bytes) -> bytes:
    """A bundle around arbitrary header bytes, validly signed (for malformed-header cases)."""
    prefix = MAGIC + struct.pack(">I", len(body)) + body
    return prefix + crypto.sign(keys, SIGNING_CONTEXT + prefix) + payload


def verify(data: bytes, trust: Trust = TRUST, now: int = NOW) -> VerifiedBundle:
    """The pure verifier with the kit's defaults."""
    return _verify(data, trust, now, MAX_BYTES, ("secrets",))


def receive(
    data: bytes, high_water: HighWater | None = None, applied: frozenset[str] = frozenset()
) -> Received[SecretsPayload]:
    """The agent's real receive pipeline with the kit's keys, limits and a stream in memory."""
    streams = MemoryStreams(applied=set(applied))
    if high_water is not None:
        streams.high_waters[(GATEWAY.key_id, "secrets")] = high_water
    return receive_secrets(data, TRUST, AGENT_KEYS, streams, NOW, LIMITS)
