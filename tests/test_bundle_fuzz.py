"""Property tests: whatever bytes arrive, the receiving pipeline either yields the original payload
(only for the untouched bundle) or raises a :class:`RelayError` with a bundle reason code.

The pipeline is the agent's real one (:func:`relay.bundle.receive.receive_secrets`, through
``tests.bundle_kit.receive``). Any other exception (IndexError, RecursionError, struct.error,
UnicodeDecodeError…) escaping it is a bug: it would crash an import instead of reporting a code.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay import crypto
from relay.bundle.envelope import HEADER_FIELDS, MAGIC, parse_envelope
from relay.bundle.payload import SecretsPayload, decode_secrets_payload
from relay.bundle.verify import HighWater, open_payload
from relay.errors import BUNDLE_REASONS, BundleDuplicate, BundleRejected, RelayError
from tests.bundle_kit import (
    AGENT_KEYS,
    GATEWAY,
    GATEWAY_KEYS,
    MAX_ENTRIES,
    MAX_SECRET_BYTES,
    NONCE,
    NOW,
    PAYLOAD,
    make_bundle,
    sign_raw,
    verify,
)
from tests.bundle_kit import receive as kit_receive

pytestmark = pytest.mark.slow  # hundreds of hypothesis examples per test

ORIGINAL = make_bundle()
ORIGINAL_ID = parse_envelope(ORIGINAL).bundle_id
PLAINTEXT = PAYLOAD.encode()
FUZZ = settings(max_examples=400, deadline=None)
FUZZ_STRUCTURED = settings(max_examples=300, deadline=None)  # costlier to generate


def receive(data: bytes, applied: bool) -> SecretsPayload:
    """The agent's pipeline. ``applied``: the original bundle was applied already."""
    high_water = HighWater(5, ORIGINAL_ID) if applied else HighWater(4, "0" * 64)
    received = kit_receive(data, high_water, frozenset({ORIGINAL_ID}) if applied else frozenset())
    assert received.bundle_id == ORIGINAL_ID, "a changed bundle was received"
    return received.payload


def assert_outcome(data: bytes, applied: bool) -> None:
    """Only the untouched bundle passes (or is a duplicate); everything else has a reason code."""
    if data == ORIGINAL:
        try:
            assert receive(data, applied) == PAYLOAD
            assert not applied
        except BundleDuplicate:
            assert applied
        return
    try:
        receive(data, applied)
    except BundleRejected as exc:
        assert exc.code in BUNDLE_REASONS
    except RelayError as exc:  # a duplicate here would mean a changed bundle passed as applied
        raise AssertionError(f"changed bundle gave {exc.code}") from exc
    else:
        raise AssertionError("a changed bundle was accepted")


@st.composite
def mutation(draw: st.DrawFn, data: bytes) -> bytes:
    """One random edit of ``data``: bit flip, substitution, insertion, deletion or truncation."""
    n = len(data)
    at = draw(st.integers(0, n - 1))
    kind = draw(st.sampled_from(["flip", "substitute", "insert", "delete", "truncate"]))
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1 :]
    if kind == "substitute":
        return data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    if kind == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    if kind == "delete":
        return data[:at] + data[at + draw(st.integers(1, 16)) :]
    return data[:at]


@st.composite
def mutated_bundle(draw: st.DrawFn) -> bytes:
    """The valid bundle after one to four random edits (sometimes none survives as a change)."""
    data = ORIGINAL
    for _ in range(draw(st.integers(1, 4))):
        data = draw(mutation(data)) if data else data
    return data


@FUZZ
@given(data=st.binary(max_size=2048), applied=st.booleans())
def test_random_bytes(data: bytes, applied: bool) -> None:
    assert_outcome(data, applied)


@FUZZ
@given(tail=st.binary(max_size=512), length=st.integers(0, 2**32 - 1), applied=st.booleans())
def test_random_bytes_after_the_magic(tail: bytes, length: int, applied: bool) -> None:
    assert_outcome(MAGIC + length.to_bytes(4, "big") + tail, applied)


@FUZZ
@given(data=mutated_bundle(), applied=st.booleans())
def test_mutated_bundle(data: bytes, applied: bool) -> None:
    assert_outcome(data, applied)


@pytest.mark.parametrize("applied", [True, False], ids=["applied", "new"])
def test_every_single_bit_flip_is_rejected(applied: bool) -> None:
    """Every one of the 8 x len(ORIGINAL) single-bit flips, not a sample: none passes, none
    passes as the applied duplicate, each is refused with a bundle reason code."""
    tried = 0
    for at in range(len(ORIGINAL)):
        for bit in range(8):
            flipped = ORIGINAL[:at] + bytes([ORIGINAL[at] ^ (1 << bit)]) + ORIGINAL[at + 1 :]
            assert_outcome(flipped, applied)
            tried += 1
    assert tried == 8 * len(ORIGINAL) > 4000


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
HEADER_VALUES = st.one_of(
    JSON_VALUES,
    st.sampled_from([1, 5, NOW, "secrets", "audit", "hq", "plant7", GATEWAY.key_id, "a" * 64]),
)


@FUZZ_STRUCTURED
@given(
    header=st.dictionaries(
        st.sampled_from([*HEADER_FIELDS, "extra"]), HEADER_VALUES, min_size=8, max_size=12
    ),
    payload=st.binary(max_size=80),
)
def test_signed_random_header(header: dict[str, Any], payload: bytes) -> None:
    """Validly signed headers of random content reach the parser's value checks; never a crash."""
    body = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    try:
        receive(sign_raw(body, GATEWAY_KEYS, payload), applied=False)
    except BundleRejected as exc:
        assert exc.code in BUNDLE_REASONS


@FUZZ_STRUCTURED
@given(
    doc=st.one_of(
        JSON_VALUES,
        st.fixed_dictionaries(
            {"v": st.sampled_from([1, 1.0, True, 2]), "state": st.sampled_from(["full", "x"])},
            optional={
                "secrets": st.lists(st.lists(HEADER_VALUES, max_size=5), max_size=4),
                "tombstones": st.lists(st.lists(HEADER_VALUES, max_size=3), max_size=4),
                "ack": JSON_VALUES,
            },
        ),
    ),
    raw=st.one_of(st.none(), st.binary(max_size=64)),
)
def test_sealed_random_payload(doc: Any, raw: bytes | None) -> None:
    """Authentic bundles with random plaintext: decoding returns a payload or says malformed."""
    plaintext = raw if raw is not None else json.dumps(doc).encode()
    payload = crypto.seal(GATEWAY_KEYS, AGENT_KEYS.box_public, plaintext, NONCE)
    bundle = verify(make_bundle(plaintext=plaintext))
    assert bundle.envelope.payload == payload
    opened = open_payload(bundle, AGENT_KEYS)
    assert opened == plaintext
    try:
        decoded = decode_secrets_payload(opened, MAX_ENTRIES, MAX_SECRET_BYTES)
    except BundleRejected as exc:
        assert exc.code == "malformed"
    else:  # what was accepted re-encodes to an equivalent payload
        assert decode_secrets_payload(decoded.encode(), MAX_ENTRIES, MAX_SECRET_BYTES) == decoded


def test_the_untouched_bundle_passes_or_is_a_duplicate() -> None:
    """The oracle itself: the original is accepted, and a duplicate once applied."""
    assert receive(ORIGINAL, applied=False) == PAYLOAD
    assert_outcome(ORIGINAL, applied=False)
    assert_outcome(ORIGINAL, applied=True)
