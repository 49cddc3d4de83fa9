"""The secret-stream payload: full state, strict JSON, every row checked before applying."""

import json
from typing import Any

import pytest

from relay.bundle.payload import (
    SecretsPayload,
    decode_secrets_payload,
    encode_full_payload,
    encode_row,
)
from relay.errors import MALFORMED, BundleRejected

CAP = 16


def _decode(data: bytes) -> SecretsPayload:
    return decode_secrets_payload(data, max_entries=10, max_secret_bytes=CAP)


def _doc(**changes: object) -> bytes:
    doc: dict[str, object] = {
        "v": 1,
        "state": "full",
        "secrets": [["db/pw", 2, "aHVudGVyMg==", None]],
        "tombstones": [["old", 4]],
        "ack": {"audit_seq": 3},
    }
    doc.update(changes)
    return json.dumps(doc).encode()


def test_round_trip() -> None:
    payload = SecretsPayload([("a/b", 1, "AAEC", 99)], [("c", 2)], 5)
    assert _decode(payload.encode()) == payload


def test_optional_lists_and_unknown_keys() -> None:
    decoded = _decode(b'{"v":1,"state":"full","secrets":[],"policies":{"x":[1.5,null]}}')
    assert decoded == SecretsPayload([], [], 0)


def test_value_exactly_at_the_cap_is_accepted() -> None:
    value = "A" * 20 + "AA=="  # 16 bytes
    assert _decode(_doc(secrets=[["k", 1, value, None]])).secrets[0][2] == value


@pytest.mark.parametrize(
    "data",
    [
        pytest.param('{"v":1,"state":"full","secrets":[]}'.encode("utf-16"), id="utf-16"),
        pytest.param(b'\xef\xbb\xbf{"v":1,"state":"full","secrets":[]}', id="utf-8-bom"),
        pytest.param(b'{"v":1,"state":"full","secrets":[],"x":NaN}', id="nan"),
        pytest.param(b'{"v":1,"state":"full","secrets":[],"secrets":[]}', id="duplicate-member"),
        pytest.param(b"[" * 5000, id="deep-nesting"),
        pytest.param(_doc(v=True), id="v-bool"),
        pytest.param(_doc(v=1.0), id="v-float"),
        pytest.param(_doc(v=2), id="v-2"),
        pytest.param(_doc(state="delta"), id="not-full-state"),
        pytest.param(_doc(secrets=None), id="no-secrets"),
        pytest.param(_doc(secrets=[["k", 1, "!!!!", None]]), id="bad-base64"),
        pytest.param(_doc(secrets=[["k", 1, "QQ", None]]), id="unpadded-base64"),
        pytest.param(_doc(secrets=[["k", 1, "A" * 20 + "AAA=", None]]), id="17-bytes"),
        pytest.param(_doc(secrets=[["k", 2**53, "AA==", None]]), id="version-over-2^53"),
        pytest.param(_doc(secrets=[["k", 1, "AA==", 2**63]]), id="expires-over-2^53"),
        pytest.param(_doc(secrets=[["k", 1, "AA==", True]]), id="expires-bool"),
        pytest.param(_doc(tombstones=[["old", 0]]), id="tombstone-version-0"),
        pytest.param(_doc(tombstones=[["old", -1]]), id="tombstone-version-negative"),
        pytest.param(_doc(tombstones=[["db/pw", 3]]), id="path-live-and-dead"),
        pytest.param(_doc(tombstones=[["old", 4], ["old", 4]]), id="tombstone-twice"),
        pytest.param(_doc(ack={"audit_seq": 2**60}), id="ack-over-2^53"),
        pytest.param(_doc(ack=[]), id="ack-not-object"),
    ],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(BundleRejected) as err:
        _decode(data)
    assert err.value.code == MALFORMED


@pytest.mark.parametrize(
    ("secrets", "tombstones", "ack", "versions", "policies"),
    [
        ([], [], 0, [], []),
        ([("a/b", 1, "dg==", None)], [], 3, [], []),
        (
            [("a/b", 2, "dg==", 1700000000), ("a/c", 1, "", None)],
            [("a/d", 4)],
            7,
            [("a/b", "pending", 3, "dw==", None, 1700000100, 60)],
            [("a/*", 3600, True)],
        ),
        ([], [("x", 1), ("y", 2)], 0, [], [("**", None, False)]),
    ],
)
def test_a_full_payload_from_encoded_rows_is_byte_for_byte_encode(
    secrets: list[Any], tombstones: list[Any], ack: int, versions: list[Any], policies: list[Any]
) -> None:
    """An export pass encodes each secret row once (encode_row) and joins them per agent: the
    bytes must be exactly SecretsPayload.encode()'s, which the conformance vectors pin."""
    expected = SecretsPayload(secrets, tombstones, ack, versions, policies).encode()
    rows = [encode_row(row) for row in secrets]
    assert encode_full_payload(rows, tombstones, ack, versions, policies) == expected
    decoded = decode_secrets_payload(expected, 100, 1000)
    assert [row[0] for row in decoded.secrets] == [row[0] for row in secrets]
