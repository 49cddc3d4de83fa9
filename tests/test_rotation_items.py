"""The ``rotation`` member of the audit payload (return stream): strict decoding."""

from __future__ import annotations

import json
from typing import Any

import pytest

from relay.audit.chain import AuditRecord
from relay.bundle.audit_payload import AuditPayload, decode_audit_payload
from relay.bundle.rotation_items import RotationItem, decode_rotation_items
from relay.errors import MALFORMED, BundleRejected

ID = "0123456789abcdef0123456789abcdef"
ITEMS = (
    RotationItem(ID, 3, "request", "db/a", reason="expiry"),
    RotationItem(ID.replace("0", "1"), 4, "escrow", "db/a", version=5, base=4, value=b"\x00new"),
    RotationItem(
        ID.replace("0", "2"), 5, "outcome", "db/a", version=5, status="applied", detail="ok"
    ),
)


def test_round_trip_and_v1_payloads_without_rotation() -> None:
    records: tuple[AuditRecord, ...] = ()
    payload = AuditPayload("plant7", 5, "ab" * 32, records, ITEMS)
    assert decode_audit_payload(payload.encode(), 100) == payload
    plain = AuditPayload("plant7", 0, "0" * 64, records)
    assert b"rotation" not in plain.encode()
    assert decode_audit_payload(plain.encode(), 100).rotation == ()
    assert "new" not in repr(ITEMS[1])


def _item(**changes: Any) -> dict[str, Any]:
    doc = ITEMS[1].to_json()
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not ...}


@pytest.mark.parametrize(
    "doc",
    [
        _item(kind="other"),
        _item(id="XYZ"),
        _item(seq=0),
        _item(path="../x"),
        _item(version=4),  # not above base
        _item(value="AA"),  # bad base64
        _item(extra=1),
        _item(value=...),  # missing member
        {**ITEMS[0].to_json(), "reason": "because"},
        {**ITEMS[2].to_json(), "status": "great"},
        {**ITEMS[2].to_json(), "detail": "x" * 201},
    ],
)
def test_malformed_items(doc: dict[str, Any]) -> None:
    with pytest.raises(BundleRejected) as caught:
        decode_rotation_items([doc], 10, 64)
    assert caught.value.code == MALFORMED


def test_ids_are_unique_and_values_capped() -> None:
    with pytest.raises(BundleRejected):
        decode_rotation_items([ITEMS[0].to_json()] * 2, 10, 64)
    big = RotationItem(ID, 1, "escrow", "db/a", version=2, base=1, value=b"x" * 65).to_json()
    with pytest.raises(BundleRejected):
        decode_rotation_items([big], 10, 64)
    with pytest.raises(BundleRejected):
        decode_rotation_items(json.loads('{"a": 1}'), 10, 64)


HOOK = RotationItem(
    ID.replace("0", "3"), 6, "hook", "db/a", version=5, hook="reload", result="ok", exit=0
)


def test_hook_items_round_trip_and_are_strict() -> None:
    assert decode_rotation_items([HOOK.to_json()], 10, 64) == [HOOK]
    timeout = HOOK.to_json() | {"result": "timeout", "exit": None}
    assert decode_rotation_items([timeout], 10, 64)[0].exit is None
    for bad in (
        {"hook": ""},
        {"hook": "x" * 65},
        {"hook": "a\nb"},
        {"result": "hook_ok"},
        {"exit": -1},
        {"exit": True},
        {"version": None},
        {"output": "PLANTED"},
    ):
        with pytest.raises(BundleRejected):
            decode_rotation_items([HOOK.to_json() | bad], 10, 64)
