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
from dataclasses import dataclass, field

from relay import crypto
from relay.bundle.envelope import SENDER_ROLE, SIGNING_CONTEXT, Envelope, Header, parse_envelope
from relay.errors import (
    BAD_SIGNATURE,
    CERT_INVALID,
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
from relay.trust.chain import ChainResult, RootState, verify_chain
from relay.trust.documents import parse_trust_section


@dataclass(frozen=True)
class Trust:
    """What the verifier trusts: its own identity (``None`` for a hop) and the pinned senders."""

    me: PublicIdentity | None
    senders: Mapping[str, PublicIdentity]  # key id -> identity
    root: RootState | None = None  # a pinned gateway root (spec §15): senders are then unused
    skew: int = 0  # leeway in seconds for certificate validity
    # A hop: the pinned roots of the gateways it carries, by gateway name. A bundle of a
    # gateway's kind (``secrets``) whose sender names one of them is judged by that root's chain
    # (as ``root`` above), never by a pinned key.
    gateway_roots: Mapping[str, RootState] = field(default_factory=dict)


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
    chain: ChainResult | None = None  # how the sender was certified, when it was

    @property
    def bundle_id(self) -> str:
        return self.envelope.bundle_id

    @property
    def stream_key(self) -> str:
        """Names the stream for sequence checks: the sender's key id, or for a certified
        sender the agent's anchor for its gateway (stable across key and root rotations)."""
        root = self.chain
        return self.envelope.header.sender_key if root is None else root.anchor


def verify_bundle(
    data: bytes, trust: Trust, now: int, max_bytes: int, kinds: tuple[str, ...]
) -> VerifiedBundle:
    """Authenticate ``data`` and check it is for us and still valid. Does not decrypt."""
    if len(data) > max_bytes:
        raise BundleRejected(f"{len(data)} bytes, over the cap of {max_bytes}", code=TOO_LARGE)
    envelope = parse_envelope(data)
    header = envelope.header
    chain = _certified_sender(header, trust, now)
    sender = trust.senders.get(header.sender_key) if chain is None else chain.signer
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
    if now - trust.skew > header.expires:
        raise BundleRejected(f"expired at {header.expires} (now {now})", code=EXPIRED)
    return VerifiedBundle(envelope, sender, chain)


def _certified_sender(header: Header, trust: Trust, now: int) -> ChainResult | None:
    """With a pinned root, the sender is whoever the bundle's chain certifies (spec §15)."""
    root = trust.root
    if root is None and SENDER_ROLE.get(header.kind) == "gateway":
        root = trust.gateway_roots.get(header.sender)
    if root is None:
        return None
    if header.trust is None:
        raise BundleRejected("the bundle carries no certificate chain", code=CERT_INVALID)
    section = parse_trust_section(header.trust)
    return verify_chain(section, root, header.sender, header.sender_key, now, trust.skew)


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
