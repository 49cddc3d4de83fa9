"""The verifier's order: cheapest first, and authenticate before judging (spec §10).

Each case breaks two or more rules at once; the code reported must be the earliest step's.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from relay.bundle.envelope import parse_envelope
from relay.bundle.verify import HighWater, Trust, check_sequence, verify_bundle
from relay.canonical import canonical_json
from relay.errors import BundleDuplicate, BundleRejected
from relay.identity import identity_of
from tests.bundle_kit import (
    AGENT,
    AGENT_KEYS,
    GATEWAY,
    GATEWAY_KEYS,
    NOW,
    OTHER_AGENT,
    PAYLOAD,
    ROGUE,
    ROGUE_KEYS,
    TRUST,
    BundleSpec,
    make_bundle,
    receive,
    sign_raw,
    verify,
)

APPLIED = make_bundle()  # seq 5: the stream's newest applied bundle
APPLIED_ID = parse_envelope(APPLIED).bundle_id
OLD = make_bundle(seq=3)  # applied earlier
OLD_ID = parse_envelope(OLD).bundle_id
HIGH_WATER = HighWater(5, APPLIED_ID)
APPLIED_SET = frozenset({APPLIED_ID, OLD_ID})
EXPIRED = NOW - 1


def flip_last(data: bytes) -> bytes:
    """Flip one bit of the last payload byte: the header (and bundle id) stay the same."""
    return data[:-1] + bytes([data[-1] ^ 1])


def flip_seq(data: bytes, seq: int) -> bytes:
    """Change ``seq`` in the signed header after signing (still canonical)."""
    return data.replace(f'"seq":{seq},'.encode(), f'"seq":{seq + 1},'.encode(), 1)


def sealed_to_other_agent(**changes: object) -> bytes:
    """A validly signed header for AGENT whose payload only OTHER_AGENT can open."""
    envelope = parse_envelope(make_bundle(recipient=OTHER_AGENT, **changes))
    doc = envelope.header.to_json()
    doc.update(recipient=AGENT.name, recipient_key=AGENT.key_id)
    return sign_raw(canonical_json(doc), GATEWAY_KEYS, envelope.payload)


def rename_sender(name: str) -> bytes:
    """The gateway's key id under another name, validly signed by the gateway."""
    envelope = parse_envelope(make_bundle(seq=6))
    doc = envelope.header.to_json()
    doc["sender"] = name
    return sign_raw(canonical_json(doc), GATEWAY_KEYS, envelope.payload)


CASES: dict[str, tuple[Callable[[], bytes], str]] = {
    # tampered copies of applied bundles are forgeries, never duplicates
    "tampered-payload-of-applied": (lambda: flip_last(APPLIED), "bad_signature"),
    "tampered-payload-of-old-applied": (lambda: flip_last(OLD), "bad_signature"),
    "tampered-header-of-applied": (lambda: flip_seq(APPLIED, 5), "bad_signature"),
    "applied-with-trailing-byte": (lambda: APPLIED + b"\0", "malformed"),
    # the sender is judged before anything the sender controls
    "unknown-sender-expired": (
        lambda: make_bundle(sender=ROGUE, keys=ROGUE_KEYS, expires=EXPIRED),
        "unknown_sender",
    ),
    "unknown-sender-wrong-recipient": (
        lambda: make_bundle(sender=ROGUE, keys=ROGUE_KEYS, recipient=OTHER_AGENT),
        "unknown_sender",
    ),
    "unknown-sender-rollback": (
        lambda: make_bundle(sender=ROGUE, keys=ROGUE_KEYS, seq=1),
        "unknown_sender",
    ),
    "unknown-sender-unexpected-kind": (
        lambda: make_bundle(sender=ROGUE, keys=ROGUE_KEYS, kind="audit"),
        "unknown_sender",
    ),
    "pinned-key-other-name": (lambda: rename_sender("hq2"), "unknown_sender"),
    "gateway-name-other-key": (
        lambda: make_bundle(sender=identity_of("gateway", "hq", ROGUE_KEYS), keys=ROGUE_KEYS),
        "unknown_sender",
    ),
    # the signature is checked before kind, recipient, expiry and sequence
    "signed-by-other-key": (lambda: make_bundle(seq=6, keys=ROGUE_KEYS), "bad_signature"),
    "tampered-and-expired": (lambda: flip_last(make_bundle(expires=EXPIRED)), "bad_signature"),
    "tampered-and-wrong-recipient": (
        lambda: flip_last(make_bundle(recipient=OTHER_AGENT)),
        "bad_signature",
    ),
    "tampered-and-unexpected-kind": (
        lambda: flip_last(make_bundle(kind="audit")),
        "bad_signature",
    ),
    "tampered-and-rollback": (lambda: flip_last(make_bundle(seq=4)), "bad_signature"),
    # then kind, recipient, expiry, sequence, decryption
    "unexpected-kind-expired": (lambda: make_bundle(kind="audit", expires=EXPIRED), "malformed"),
    "wrong-recipient-expired": (
        lambda: make_bundle(recipient=OTHER_AGENT, expires=EXPIRED),
        "wrong_recipient",
    ),
    "expired-rollback": (lambda: make_bundle(seq=4, expires=EXPIRED), "expired"),
    "expired-duplicate": (lambda: make_bundle(seq=3, expires=EXPIRED), "expired"),
    "rollback-undecryptable": (lambda: sealed_to_other_agent(seq=4), "rollback"),
    "same-seq-other-bundle": (lambda: make_bundle(seq=5, created=NOW - 61), "rollback"),
    "lower-seq-never-applied": (lambda: make_bundle(seq=4), "rollback"),
    "undecryptable": (lambda: sealed_to_other_agent(seq=6), "decrypt_failed"),
    "boxed-by-another-key": (
        lambda: sign_header_of(make_bundle(seq=6, keys=ROGUE_KEYS)),
        "decrypt_failed",
    ),
    "old-applied-bundle-again": (lambda: OLD, "duplicate"),
    "newest-applied-bundle-again": (lambda: APPLIED, "duplicate"),
}


def sign_header_of(data: bytes) -> bytes:
    """Re-sign ``data``'s header (naming the gateway) with the gateway key; payload unchanged."""
    envelope = parse_envelope(data)
    doc = envelope.header.to_json()
    doc.update(sender=GATEWAY.name, sender_key=GATEWAY.key_id)
    return sign_raw(canonical_json(doc), GATEWAY_KEYS, envelope.payload)


@pytest.mark.parametrize("case", sorted(CASES))
def test_first_failing_step_decides(case: str) -> None:
    make, code = CASES[case]
    with pytest.raises((BundleRejected, BundleDuplicate)) as err:
        receive(make(), HIGH_WATER, APPLIED_SET)
    assert err.value.code == code


def test_a_valid_newer_bundle_is_accepted() -> None:
    assert receive(make_bundle(seq=6), HIGH_WATER, APPLIED_SET).payload == PAYLOAD


def test_first_bundle_of_a_stream_has_no_high_water() -> None:
    assert receive(make_bundle(seq=1)).payload == PAYLOAD


def test_too_large_is_judged_before_anything_is_parsed() -> None:
    with pytest.raises(BundleRejected) as err:
        verify_bundle(b"\xff" * 101, TRUST, NOW, 100, ("secrets",))
    assert err.value.code == "too_large"
    data = make_bundle()
    verify_bundle(data, TRUST, NOW, len(data), ("secrets",))
    with pytest.raises(BundleRejected) as err:
        verify_bundle(data, TRUST, NOW, len(data) - 1, ("secrets",))
    assert err.value.code == "too_large"


def test_expiry_is_inclusive() -> None:
    data = make_bundle(expires=NOW)
    verify(data, now=NOW)
    with pytest.raises(BundleRejected) as err:
        verify(data, now=NOW + 1)
    assert err.value.code == "expired"


def test_recipient_needs_both_key_id_and_name() -> None:
    renamed = identity_of("agent", "plant9", AGENT_KEYS)
    with pytest.raises(BundleRejected) as err:
        verify(make_bundle(), trust=Trust(renamed, TRUST.senders))
    assert err.value.code == "wrong_recipient"


def test_a_hop_without_identity_skips_the_recipient_check() -> None:
    hop = Trust(None, TRUST.senders)
    bundle = verify(make_bundle(recipient=OTHER_AGENT), trust=hop)
    assert bundle.envelope.header.recipient == OTHER_AGENT.name


def test_the_pinned_sender_is_returned() -> None:
    assert verify(make_bundle()).sender == GATEWAY


def test_duplicate_is_decided_by_bundle_id_not_seq() -> None:
    bundle = verify(make_bundle(seq=9))
    check_sequence(bundle, HighWater(8, "0" * 64), already_applied=False)
    with pytest.raises(BundleDuplicate):
        check_sequence(bundle, HighWater(8, "0" * 64), already_applied=True)
    with pytest.raises(BundleDuplicate):
        check_sequence(bundle, HighWater(9, bundle.bundle_id))
    with pytest.raises(BundleRejected) as err:
        check_sequence(bundle, HighWater(9, "0" * 64))
    assert err.value.code == "rollback"


def test_default_spec_is_the_applied_bundle() -> None:
    assert make_bundle(BundleSpec()) == APPLIED


def test_a_pinned_identity_may_only_send_its_roles_kind() -> None:
    """An agent's key, even if pinned, cannot send a secrets bundle (only gateways do).

    Judged with the kind, after the signature: the role is a property of the pinned identity.
    """
    agent_as_sender = identity_of("agent", "plant8", ROGUE_KEYS)
    trust = Trust(AGENT, {**TRUST.senders, agent_as_sender.key_id: agent_as_sender})
    data = make_bundle(sender=agent_as_sender, keys=ROGUE_KEYS)
    with pytest.raises(BundleRejected) as err:
        verify(data, trust=trust)
    assert err.value.code == "malformed"
    with pytest.raises(BundleRejected) as err:
        verify(flip_last(data), trust=trust)
    assert err.value.code == "bad_signature"
    gateway_role = identity_of("gateway", "plant8", ROGUE_KEYS)
    trust = Trust(AGENT, {**TRUST.senders, gateway_role.key_id: gateway_role})
    assert verify(data, trust=trust).sender == gateway_role
