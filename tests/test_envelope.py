"""The envelope codec: layout and strict header syntax."""

import json
import struct

import pytest

from relay.bundle.envelope import MAGIC, PREFIX_BYTES, parse_envelope
from relay.canonical import canonical_json
from relay.errors import MALFORMED, BundleRejected
from tests.bundle_kit import GATEWAY_KEYS, make_bundle, sign_raw


def _header_and_payload(data: bytes) -> tuple[dict[str, object], bytes]:
    envelope = parse_envelope(data)
    return envelope.header.to_json(), envelope.payload


def test_layout_round_trip() -> None:
    data = make_bundle()
    envelope = parse_envelope(data)
    (length,) = struct.unpack(">I", data[8:12])
    assert data[:8] == MAGIC
    assert data[PREFIX_BYTES : PREFIX_BYTES + length] == canonical_json(envelope.header.to_json())
    assert len(data) == PREFIX_BYTES + length + 64 + envelope.header.payload_len
    assert envelope.signed == data[: PREFIX_BYTES + length]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sender", "hq\n"),
        ("recipient", "plant7\n"),
        ("sender_key", "0123456789abcdef\n"),
        ("payload_sha256", "0" * 64 + "\n"),
    ],
)
def test_trailing_newline_in_a_header_string_is_malformed(field: str, value: str) -> None:
    """Regression: ``re.match`` with ``$`` accepted a trailing newline in names and hex ids."""
    header, payload = _header_and_payload(make_bundle())
    header[field] = value
    with pytest.raises(BundleRejected) as err:
        parse_envelope(sign_raw(canonical_json(header), GATEWAY_KEYS, payload))
    assert err.value.code == MALFORMED


def test_deeply_nested_header_is_malformed() -> None:
    """Regression: a header of 5000 ``[`` raised RecursionError before any authentication."""
    body = b"[" * 5000 + b"]" * 5000
    with pytest.raises(BundleRejected) as err:
        parse_envelope(sign_raw(body, GATEWAY_KEYS, b"\0" * 40))
    assert err.value.code == MALFORMED


def test_header_is_plain_json() -> None:
    header, _ = _header_and_payload(make_bundle())
    assert json.loads(canonical_json(header)) == header
