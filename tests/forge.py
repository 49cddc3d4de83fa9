"""Build bundles in-process with a gateway's real keys, for scenarios the CLI will not produce
(expired, sealed to the wrong key, bad payloads)."""

from __future__ import annotations

import time
from pathlib import Path

from relay import crypto
from relay.bundle.envelope import Header
from relay.bundle.payload import SecretsPayload
from relay.bundle.seal import seal_bundle, sign_header
from relay.home import Home


def secrets_payload(values: dict[str, bytes], version: int = 1) -> bytes:
    rows = [(p, version, crypto.b64(v), None) for p, v in sorted(values.items())]
    return SecretsPayload(rows).encode()


def forge(
    gw: Path,
    ag: Path,
    plaintext: bytes,
    *,
    seq: int = 1000,
    created: int | None = None,
    expires: int | None = None,
    keys: crypto.KeyPair | None = None,
) -> bytes:
    """A bundle from the gateway at ``gw`` to the agent at ``ag``, signed with ``keys`` if given."""
    gateway = Home.open(gw, "gateway")
    agent = Home.open(ag, "agent")
    now = int(time.time())
    created = now if created is None else created
    return seal_bundle(
        kind="secrets",
        sender=gateway.identity,
        keys=keys or gateway.secrets.keys,
        recipient=agent.identity,
        seq=seq,
        created=created,
        expires=created + 3600 if expires is None else expires,
        plaintext=plaintext,
    )


def forge_sealed_to_other_key(gw: Path, ag: Path, plaintext: bytes, seq: int = 1000) -> bytes:
    """Validly signed by the gateway and addressed to the agent, but sealed to another key."""
    gateway = Home.open(gw, "gateway")
    agent = Home.open(ag, "agent")
    stranger = crypto.generate_keypair()
    payload = crypto.seal(gateway.secrets.keys, stranger.box_public, plaintext)
    now = int(time.time())
    header = Header(
        kind="secrets",
        sender=gateway.identity.name,
        sender_key=gateway.identity.key_id,
        recipient=agent.identity.name,
        recipient_key=agent.identity.key_id,
        seq=seq,
        created=now,
        expires=now + 3600,
        payload_len=len(payload),
        payload_sha256=crypto.sha256(payload).hex(),
    )
    return sign_header(header, gateway.secrets.keys, payload)
