"""Making a bundle: seal the payload to the recipient, then sign the header that binds it."""

from __future__ import annotations

from typing import Any

from relay import crypto
from relay.bundle.envelope import (
    SIGNING_CONTEXT,
    BundleBase,
    Header,
    encode_envelope,
    signed_prefix,
)
from relay.identity import PublicIdentity


def seal_bundle(
    *,
    kind: str,
    sender: PublicIdentity,
    keys: crypto.KeyPair,
    recipient: PublicIdentity,
    seq: int,
    created: int,
    expires: int,
    plaintext: bytes,
    nonce: bytes | None = None,
    trust: dict[str, Any] | None = None,
    base: BundleBase | None = None,
) -> bytes:
    """The bundle bytes. ``nonce`` is random unless given (fixed only for test vectors)."""
    payload = crypto.seal(keys, recipient.box_public, plaintext, nonce)
    header = Header(
        kind=kind,
        sender=sender.name,
        sender_key=sender.key_id,
        recipient=recipient.name,
        recipient_key=recipient.key_id,
        seq=seq,
        created=created,
        expires=expires,
        payload_len=len(payload),
        payload_sha256=crypto.sha256(payload).hex(),
        trust=trust,
        base=base,
    )
    return sign_header(header, keys, payload)


def sign_header(header: Header, keys: crypto.KeyPair, payload: bytes) -> bytes:
    """Sign ``header`` and assemble the bundle (the sharp layer: vectors use it directly)."""
    signature = crypto.sign(keys, SIGNING_CONTEXT + signed_prefix(header))
    return encode_envelope(header, signature, payload)


def bundle_file_name(header: Header) -> str:
    """The conventional file name: ``SENDER-to-RECIPIENT.KIND.SEQ.bundle``."""
    return f"{header.sender}-to-{header.recipient}.{header.kind}.{header.seq:010d}.bundle"
