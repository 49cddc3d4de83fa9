"""The bundle verifier's steps: bytes, trusted state and ``now`` in; a verified bundle or an error.

These are the building blocks; entry points call the composed pipeline in
:mod:`relay.bundle.receive`, never these steps one by one. Not this module's business: reading
files, keeping the high-water mark, applying a payload, quarantine, audit.

Checks run cheapest first and authenticate before judging (``docs/spec/bundle-v1.md`` §10):
size cap → envelope parse → sender known → signature (and payload binding) → kind (accepted here,
sent by the sender's role) → recipient → validity → sequence → decrypt. Each failure is a
:class:`~relay.errors.BundleRejected` with its reason code; a re-import of an applied bundle is
:class:`~relay.errors.BundleDuplicate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from relay import crypto
from relay.bundle.envelope import SENDER_ROLE, SIGNING_CONTEXT, Envelope, parse_envelope
from relay.errors import (
    BAD_SIGNATURE,
    DECRYPT_FAILED,
    EXPIRED,
    MALFORMED,
    ROLLBACK,
    TOO_LARGE,
    UNKNOWN_SENDER,
    WRONG_RECIPIENT,
    BundleDuplicate,
    BundleRejected,
)
from relay.identity import PublicIdentity


@dataclass(frozen=True)
class Trust:
    """What the verifier trusts: its own identity (``None`` for a hop) and the pinned senders."""

    me: PublicIdentity | None
    senders: Mapping[str, PublicIdentity]  # key id -> identity


@dataclass(frozen=True)
class HighWater:
    """The newest applied bundle of a stream."""

    seq: int
    bundle_id: str


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose header and payload binding are authenticated (payload still sealed)."""

    envelope: Envelope
    sender: PublicIdentity

    @property
    def bundle_id(self) -> str:
        return self.envelope.bundle_id


def verify_bundle(
    data: bytes, trust: Trust, now: int, max_bytes: int, kinds: tuple[str, ...]
) -> VerifiedBundle:
    """Authenticate ``data`` and check it is for us and still valid. Does not decrypt."""
    if len(data) > max_bytes:
        raise BundleRejected(f"{len(data)} bytes, over the cap of {max_bytes}", code=TOO_LARGE)
    envelope = parse_envelope(data)
    header = envelope.header
    sender = trust.senders.get(header.sender_key)
    if sender is None or sender.name != header.sender:
        raise BundleRejected(
            f"sender {header.sender} ({header.sender_key}) is not trusted", code=UNKNOWN_SENDER
        )
    try:
        crypto.verify(sender.sign_public, SIGNING_CONTEXT + envelope.signed, envelope.signature)
    except crypto.CryptoFailure:
        raise BundleRejected("signature does not verify", code=BAD_SIGNATURE) from None
    if crypto.sha256(envelope.payload).hex() != header.payload_sha256:
        raise BundleRejected("payload does not match the signed header", code=BAD_SIGNATURE)
    if header.kind not in kinds:
        raise BundleRejected(f"unexpected bundle kind {header.kind!r}", code=MALFORMED)
    if sender.role != SENDER_ROLE[header.kind]:
        raise BundleRejected(f"a {sender.role} does not send {header.kind} bundles", code=MALFORMED)
    me = trust.me
    if me is not None and (header.recipient_key != me.key_id or header.recipient != me.name):
        raise BundleRejected(
            f"addressed to {header.recipient} ({header.recipient_key}), not to us",
            code=WRONG_RECIPIENT,
        )
    if now > header.expires:
        raise BundleRejected(f"expired at {header.expires} (now {now})", code=EXPIRED)
    return VerifiedBundle(envelope, sender)


def check_sequence(
    bundle: VerifiedBundle, high_water: HighWater | None, already_applied: bool = False
) -> None:
    """Refuse rollbacks of a monotonic stream; a bundle applied before is a ``duplicate``.

    ``already_applied`` says whether this exact bundle id was applied earlier (not necessarily
    the newest): an old bundle left on a medium is then a harmless skip, not an alarm.
    """
    seq = bundle.envelope.header.seq
    if already_applied or (
        high_water is not None
        and seq == high_water.seq
        and bundle.bundle_id == high_water.bundle_id
    ):
        raise BundleDuplicate(f"bundle seq {seq} was already applied")
    if high_water is None:
        return
    if seq <= high_water.seq:
        raise BundleRejected(
            f"seq {seq} is not newer than the applied seq {high_water.seq}", code=ROLLBACK
        )


def open_payload(bundle: VerifiedBundle, keys: crypto.KeyPair) -> bytes:
    """Decrypt the sealed payload (only the recipient can)."""
    try:
        return crypto.unseal(keys, bundle.sender.box_public, bundle.envelope.payload)
    except crypto.CryptoFailure:
        raise BundleRejected("payload cannot be decrypted", code=DECRYPT_FAILED) from None
