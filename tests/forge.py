"""Build bundles in-process with a gateway's real keys, for scenarios the CLI will not produce
(expired, sealed to the wrong key, bad payloads)."""

from __future__ import annotations

import time
from pathlib import Path

from relay import crypto
from relay.audit.chain import AuditRecord
from relay.audit.record import compute_hash
from relay.bundle.audit_payload import AuditPayload
from relay.bundle.envelope import Header
from relay.bundle.payload import SecretsPayload
from relay.bundle.seal import seal_bundle, sign_header
from relay.frozen import replace
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


def forge_audit(
    ag: Path,
    gw: Path,
    records: list[AuditRecord],
    *,
    seq: int = 1000,
    keys: crypto.KeyPair | None = None,
    head: tuple[int, str] | None = None,
) -> bytes:
    """An audit bundle from the agent at ``ag`` to the gateway at ``gw`` carrying ``records``."""
    agent = Home.open(ag, "agent")
    gateway = Home.open(gw, "gateway")
    last = head or ((records[-1].seq, records[-1].hash) if records else (0, "0" * 64))
    payload = AuditPayload(agent.identity.name, last[0], last[1], tuple(records))
    now = int(time.time())
    return seal_bundle(
        kind="audit",
        sender=agent.identity,
        keys=keys or agent.secrets.keys,
        recipient=gateway.identity,
        seq=seq,
        created=now,
        expires=now + 3600,
        plaintext=payload.encode(),
    )


def rehash(records: list[AuditRecord]) -> list[AuditRecord]:
    """Re-chain ``records`` as whoever holds them could (no key needed)."""
    out: list[AuditRecord] = []
    prev = "0" * 64 if not records or records[0].seq == 1 else records[0].prev_hash
    for record in records:
        body = replace(record, prev_hash=prev, hash="0" * 64)
        fixed = replace(body, hash=compute_hash(body))
        out.append(fixed)
        prev = fixed.hash
    return out
