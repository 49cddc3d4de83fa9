"""Making a bundle: seal the payload to the recipient, then sign the header that binds it."""

from __future__ import annotations

from typing import Any

from relay import crypto
from relay.bundle.envelope import (
    SIGNING_CONTEXT,
    BundleBase,
    Header,
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
    return seal_bundle_identified(
        kind=kind,
        sender=sender,
        keys=keys,
        recipient=recipient,
        seq=seq,
        created=created,
        expires=expires,
        plaintext=plaintext,
        nonce=nonce,
        trust=trust,
        base=base,
    )[0]


def seal_bundle_identified(
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
) -> tuple[bytes, Header, str]:
    """:func:`seal_bundle`, with the header it signed and the bundle's id (the SHA-256 of the
    signed bytes, as :attr:`~relay.bundle.envelope.Envelope.bundle_id` would read it back):
    an export pass needs both, and parsing what it just made would cost a canonical-JSON round
    trip per bundle."""
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
    data, signed = _signed(header, keys, payload)
    return data, header, crypto.sha256(data[:signed]).hex()


def sign_header(header: Header, keys: crypto.KeyPair, payload: bytes) -> bytes:
    """Sign ``header`` and assemble the bundle (the sharp layer: vectors use it directly)."""
    return _signed(header, keys, payload)[0]


def _signed(header: Header, keys: crypto.KeyPair, payload: bytes) -> tuple[bytes, int]:
    """The bundle bytes (as :func:`~relay.bundle.envelope.encode_envelope`: the signed prefix,
    the signature, the payload) and the length of the signed prefix; the prefix is encoded
    once for the signature and the bundle both."""
    prefix = signed_prefix(header)
    signature = crypto.sign(keys, SIGNING_CONTEXT + prefix)
    return prefix + signature + payload, len(prefix)


def bundle_file_name(header: Header) -> str:
    """The conventional file name: ``SENDER-to-RECIPIENT.KIND.SEQ.bundle``."""
    return f"{header.sender}-to-{header.recipient}.{header.kind}.{header.seq:010d}.bundle"
