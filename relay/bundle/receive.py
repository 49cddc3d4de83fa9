"""The one receive pipeline: bytes, trusted state, ``now`` and limits in; a verified, decrypted,
decoded payload (or, for a hop, a verified but still sealed bundle) or a reason code out.

Every entry point uses it: ``relay agent import``, the agent service's inbox (and so the diode
receiver, which writes into it), SFTP pulls, ``relay gateway import`` (the audit stream) and the
hop (which stops before decrypting). The steps run cheapest first and authenticate before
judging (``docs/spec/bundle-v1.md`` §10)::

    size cap → envelope parse → sender known → signature and payload binding → kind → recipient
    → validity → sequence (duplicate, rollback, a delta's base) → decrypt → decode

A failure is :class:`~relay.errors.BundleRejected` with its reason code; a bundle applied before
is :class:`~relay.errors.BundleDuplicate`. Nothing else escapes: an unexpected exception inside
a step (a bug, odd bytes the codec did not foresee) is a ``malformed`` rejection.

Not this module's business: reading files, quarantine, audit, and writing what was received.
The stream state (high-water marks, applied bundle ids) is read through :class:`StreamState`,
which a store implements inside the write transaction that then applies the result, so the
sequence judgement and the write are one atomic step.

Example::

    limits = Limits.from_config(home.config)
    with store.receiving() as stream:
        received = receive_secrets(data, Trust(me, senders), keys, stream, now, limits)
        stream.apply(received, now)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from relay import crypto
from relay.bundle.audit_payload import AuditPayload, decode_audit_payload
from relay.bundle.envelope import SIGNING_CONTEXT, SignedHead, parse_head
from relay.bundle.limits import Limits
from relay.bundle.payload import SecretsPayload, decode_secrets_payload
from relay.bundle.verify import (
    HighWater,
    Trust,
    VerifiedBundle,
    check_sequence,
    open_payload,
    verify_bundle,
)
from relay.errors import DELTA_BASE_MISSING, MALFORMED, BundleDuplicate, BundleRejected

__all__ = [
    "HeadVerdict",
    "Limits",
    "MemoryStreams",
    "Received",
    "SecretStreamState",
    "StreamState",
    "check_base",
    "judge_head",
    "precheck_secrets",
    "receive_audit",
    "receive_sealed",
    "receive_secrets",
]

VERIFY, SEQUENCE, DECRYPT, PAYLOAD = "verify", "sequence", "decrypt", "payload"  # stages

P = TypeVar("P")
T = TypeVar("T")


class StreamState(Protocol):
    """What the receiver knows of the streams it applied (read inside the write transaction)."""

    def high_water(self, sender_key: str, kind: str) -> HighWater | None:
        """The newest applied bundle of the stream, or ``None`` before the first."""
        ...

    def was_applied(self, bundle_id: str) -> bool:
        """Whether this exact signed bundle was applied (not necessarily the newest)."""
        ...


class SecretStreamState(StreamState, Protocol):
    """The secret stream's state: also which applied bundle a delta may build on."""

    def applied_seq(self, stream_key: str, bundle_id: str) -> int | None:
        """The seq under which this exact bundle was applied in the stream, or ``None``."""
        ...


@dataclass
class MemoryStreams:
    """A :class:`SecretStreamState` held in memory (tests, vectors, simulators)."""

    high_waters: dict[tuple[str, str], HighWater] = field(default_factory=dict)
    applied: set[str] = field(default_factory=set)
    applied_in: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (stream, seq)

    def high_water(self, sender_key: str, kind: str) -> HighWater | None:
        return self.high_waters.get((sender_key, kind))

    def was_applied(self, bundle_id: str) -> bool:
        return bundle_id in self.applied

    def applied_seq(self, stream_key: str, bundle_id: str) -> int | None:
        for (key, _kind), mark in self.high_waters.items():
            if key == stream_key and mark.bundle_id == bundle_id:
                return mark.seq
        stream, seq = self.applied_in.get(bundle_id, ("", 0))
        return seq if stream == stream_key else None


@dataclass(frozen=True)
class Received(Generic[P]):
    """A bundle that passed every check, with its decoded payload."""

    bundle: VerifiedBundle
    payload: P

    @property
    def bundle_id(self) -> str:
        return self.bundle.bundle_id


def receive_secrets(
    data: bytes,
    trust: Trust,
    keys: crypto.KeyPair,
    streams: SecretStreamState,
    now: int,
    limits: Limits,
    trace: Callable[[str], None] = lambda _stage: None,
) -> Received[SecretsPayload]:
    """Every check of the secret stream (monotonic ``seq``; a delta's base applied), then
    decrypt and decode.

    ``trace`` is told each stage as it starts (``verify``, ``sequence``, ``decrypt``,
    ``payload``): the conformance vectors name the stage that decides."""

    def run() -> Received[SecretsPayload]:
        bundle = _before_decrypting(data, trust, streams, now, limits, trace)
        header = bundle.envelope.header
        trace(DECRYPT)
        plaintext = open_payload(bundle, keys)
        trace(PAYLOAD)
        payload = decode_secrets_payload(
            plaintext, limits.max_entries, limits.max_secret_bytes, header.base is not None
        )
        return Received(bundle, payload)

    return _strict(run)


def precheck_secrets(
    data: bytes, trust: Trust, streams: SecretStreamState, now: int, limits: Limits
) -> None:
    """The checks :func:`receive_secrets` makes before it decrypts (authenticity, expiry, the
    stream's sequence, a delta's base), raising exactly what it would raise there. The agent
    service runs them itself, so that only a bundle that will be decrypted and applied goes to
    its apply process (ADR 0022); that process's transaction runs them all again."""

    _strict(lambda: _before_decrypting(data, trust, streams, now, limits, lambda _stage: None))


def _before_decrypting(
    data: bytes,
    trust: Trust,
    streams: SecretStreamState,
    now: int,
    limits: Limits,
    trace: Callable[[str], None],
) -> VerifiedBundle:
    """The secret stream's checks before decryption: authenticity and expiry, the sequence, a
    delta's base."""
    trace(VERIFY)
    bundle = _authenticated(data, trust, now, limits, ("secrets",))
    trace(SEQUENCE)
    check_sequence(
        bundle,
        streams.high_water(bundle.stream_key, bundle.envelope.header.kind),
        streams.was_applied(bundle.bundle_id),
    )
    check_base(bundle, streams)
    return bundle


def check_base(bundle: VerifiedBundle, streams: SecretStreamState) -> None:
    """A delta applies only on top of its base: this exact bundle (id and seq) was applied in
    the same stream (spec §8.3). The gateway makes every delta cumulative since its base, so any
    later bundle of the stream applied since does not matter. ``delta_base_missing`` otherwise:
    nothing changes, and the next full bundle repairs the stream."""
    base = bundle.envelope.header.base
    if base is None:
        return
    if streams.applied_seq(bundle.stream_key, base.id) != base.seq:
        raise BundleRejected(
            f"delta on base seq {base.seq}, which this agent has not applied",
            code=DELTA_BASE_MISSING,
        )


def receive_audit(
    data: bytes,
    trust: Trust,
    keys: crypto.KeyPair,
    streams: StreamState,
    now: int,
    limits: Limits,
) -> Received[AuditPayload]:
    """Every check of the return stream, then decrypt and decode.

    Audit records are facts: bundles arriving out of order are merged, so the only sequence
    judgement is ``duplicate`` (this exact bundle was imported); never ``rollback``.
    """

    def run() -> Received[AuditPayload]:
        bundle = _authenticated(data, trust, now, limits, ("audit",))
        if streams.was_applied(bundle.bundle_id):
            seq = bundle.envelope.header.seq
            raise BundleDuplicate(f"audit bundle seq {seq} was already imported")
        payload = decode_audit_payload(
            open_payload(bundle, keys), limits.max_entries, limits.max_secret_bytes
        )
        if payload.agent != bundle.sender.name:
            raise BundleRejected("audit payload names another agent", code=MALFORMED)
        return Received(bundle, payload)

    return _strict(run)


def receive_sealed(
    data: bytes, trust: Trust, now: int, limits: Limits, kinds: tuple[str, ...]
) -> VerifiedBundle:
    """The hop's part of the pipeline: authenticated and valid, still sealed (a hop holds no
    recipient key; ``trust.me`` is ``None``, so any recipient is accepted)."""
    return _strict(lambda: _authenticated(data, trust, now, limits, kinds))


@dataclass(frozen=True)
class HeadVerdict:
    """What an authenticated head alone allows deciding without reading the payload."""

    status: str  # "applied": skip as duplicate | "elsewhere": for another recipient
    head: SignedHead

    @property
    def bundle_id(self) -> str:
        return self.head.bundle_id


def judge_head(
    prefix: bytes, trust: Trust, was_applied: Callable[[str], bool]
) -> HeadVerdict | None:
    """Decide from the header and signature alone (the first bytes of a file), or ``None``.

    The signature covers the header, and the header binds the payload by length and SHA-256, so
    a verified head names exactly one bundle. Only a head signed by a pinned sender may skip a
    file: as ``applied`` when that bundle was applied, or as ``elsewhere`` when it is addressed to
    another recipient (a shared medium), which includes the receiver's own outgoing bundles
    (signed with its own key: a medium that carries both directions). ``None`` (anything
    unverified, or new) means: read the whole file and run the pipeline, which judges and
    reports it. Never raises.
    """
    try:
        head = parse_head(prefix)
        header = head.header
        me = trust.me
        sender = trust.senders.get(header.sender_key)
        if me is not None and header.sender_key == me.key_id:
            sender = me  # our own outgoing bundle (a medium carrying both directions)
        if sender is None or sender.name != header.sender:
            return None
        crypto.verify(sender.sign_public, SIGNING_CONTEXT + head.signed, head.signature)
        if me is not None and (header.recipient_key != me.key_id or header.recipient != me.name):
            return HeadVerdict("elsewhere", head)
        if was_applied(head.bundle_id):
            return HeadVerdict("applied", head)
    except Exception:  # any doubt: read the whole file and let the pipeline judge
        return None
    return None


def _authenticated(
    data: bytes, trust: Trust, now: int, limits: Limits, kinds: tuple[str, ...]
) -> VerifiedBundle:
    return verify_bundle(data, trust, now, limits.max_bundle_bytes, kinds)


def _strict(step: Callable[[], T]) -> T:
    """Run ``step``; anything but a reason code becomes ``malformed`` (per-bundle isolation)."""
    try:
        return step()
    except (BundleRejected, BundleDuplicate):
        raise
    except Exception as exc:  # odd input must never escape as a crash
        raise BundleRejected(f"unreadable bundle ({type(exc).__name__})", code=MALFORMED) from None
