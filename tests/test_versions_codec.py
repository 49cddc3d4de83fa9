"""The ``versions`` member of the secrets payload (spec §8.1): previous and pending rows."""

from __future__ import annotations

import json

import pytest

from relay.bundle.payload import SecretsPayload, decode_secrets_payload
from relay.errors import MALFORMED, BundleRejected

CURRENT = ["db/a", 4, "Y3VycmVudA==", None]


def _decode(doc: dict[str, object]) -> SecretsPayload:
    return decode_secrets_payload(json.dumps(doc).encode(), 100, 64)


def _doc(versions: object, secrets: object = None, tombstones: object = None) -> dict[str, object]:
    return {
        "v": 1,
        "state": "full",
        "secrets": [CURRENT] if secrets is None else secrets,
        "tombstones": tombstones or [],
        "versions": versions,
    }


def test_round_trip_keeps_previous_and_pending() -> None:
    payload = SecretsPayload(
        [("db/a", 4, "Y3VycmVudA==", None)],
        versions=[
            ("db/a", "previous", 3, "b2xk", None, 1_800_000_100, None),
            ("db/a", "pending", 5, "bmV3", 1_800_009_999, 1_800_000_050, 3600),
            ("db/new", "pending", 1, "Zmlyc3Q=", None, 1_800_000_060, None),
        ],
    )
    assert decode_secrets_payload(payload.encode(), 100, 64) == payload


def test_a_payload_without_versions_encodes_as_v1_did() -> None:
    payload = SecretsPayload([("db/a", 4, "Y3VycmVudA==", None)])
    assert b"versions" not in payload.encode()
    assert decode_secrets_payload(payload.encode(), 100, 64).versions == []


@pytest.mark.parametrize(
    "versions",
    [
        "not a list",
        [["db/a", "pending", 5, "bmV3", None, 1]],  # six items
        [["db/a", "next", 5, "bmV3", None, 1, None]],  # unknown label
        [["db/a", "current", 5, "bmV3", None, 1, None]],  # current is the secrets row
        [["db/a", "pending", 4, "bmV3", None, 1, None]],  # not newer than current
        [["db/a", "pending", 5, "bmV3", None, None, None]],  # no activates_at
        [["db/a", "pending", 5, "bmV3", None, 1, -1]],  # negative overlap
        [["db/a", "previous", 4, "b2xk", None, 1, None]],  # not older than current
        [["db/zz", "previous", 1, "b2xk", None, 1, None]],  # previous with no current
        [["db/a", "previous", 3, "b2xk", None, 1, 5]],  # previous carries no overlap
        [["db/a", "previous", 3, "b2x", None, 1, None]],  # bad base64
        [["db/a", "previous", 3, "QUFB" * 30, None, 1, None]],  # over the size cap
        [["../a", "pending", 5, "bmV3", None, 1, None]],  # bad path
        [["db/a", "pending", True, "bmV3", None, 1, None]],  # bool version
        [["db/a", "pending", 5, "bmV3", None, 1, None]] * 2,  # label twice
    ],
)
def test_malformed_versions(versions: object) -> None:
    with pytest.raises(BundleRejected) as caught:
        _decode(_doc(versions))
    assert caught.value.code == MALFORMED


def test_a_removed_path_has_no_labelled_versions() -> None:
    doc = _doc([["db/b", "pending", 3, "bmV3", None, 1, None]], tombstones=[["db/b", 2]])
    with pytest.raises(BundleRejected):
        _decode(doc)


def test_versions_count_toward_max_entries() -> None:
    rows = [[f"p/{i}", "pending", 1, "", None, 1, None] for i in range(100)]
    with pytest.raises(BundleRejected):
        _decode(_doc(rows))
