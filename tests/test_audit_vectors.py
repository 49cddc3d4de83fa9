"""The audit payload vectors in ``bundles/vectors/audit`` (spec §9): each reaches its expected
outcome at its stated step, through the gateway's real decoder and its one merge function."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from outer_gateway.audit_merge import Merge, merge_incoming
from relay.bundle.audit_payload import AuditPayload, decode_audit_payload
from relay.bundle.verify import Trust, open_payload, verify_bundle
from relay.codes import MALFORMED
from relay.errors import BundleRejected
from tests.test_vectors import party

AUDIT = Path(__file__).resolve().parent.parent / "bundles" / "vectors" / "audit"
MANIFEST: dict[str, dict[str, Any]] = json.loads((AUDIT / "manifest.json").read_text())


@cache
def context() -> dict[str, Any]:
    return dict(json.loads((AUDIT / "context.json").read_text()))


def judge(data: bytes) -> tuple[str, str | None, AuditPayload | None, Merge | None]:
    """(outcome, deciding step, payload, merge) as a conforming gateway judges ``data``."""
    ctx = context()
    me, my_keys = party(ctx["verifier"])
    senders = {ident.key_id: ident for ident, _ in map(party, ctx["trusted_senders"])}
    held = {r["seq"]: (r["hash"], r["prev_hash"]) for r in ctx["held"]}
    limits = ctx["limits"]
    step = "verify"
    try:
        bundle = verify_bundle(
            data, Trust(me, senders), ctx["now"], limits["max_bundle_bytes"], tuple(ctx["kinds"])
        )
        step = "decrypt"
        plaintext = open_payload(bundle, my_keys)
        step = "payload"
        payload = decode_audit_payload(plaintext, limits["max_entries"])
        if payload.agent != bundle.sender.name:
            raise BundleRejected("names another agent", code=MALFORMED)
        step = "merge"
        merge = merge_incoming(payload, held)
    except BundleRejected as exc:
        return exc.code, step, None, None
    return "ok", None, payload, merge


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_audit_vector(name: str) -> None:
    entry = MANIFEST[name]
    outcome, step, payload, merge = judge((AUDIT / entry["file"]).read_bytes())
    assert (outcome, step) == (entry["expect"], entry["step"]), entry["note"]
    if outcome == "ok":
        assert payload is not None
        assert merge is not None
        want = entry["result"]
        assert payload.agent == want["agent"]
        assert {"seq": payload.head_seq, "hash": payload.head_hash} == want["head"]
        assert [r.seq for r in payload.records] == want["records"]
        assert [r.seq for r in merge.new] == want["new"]
        assert merge.duplicates == want["duplicates"]
        assert [item.id for item in payload.rotation] == want.get("rotation", [])


def test_every_audit_outcome_and_step_is_covered() -> None:
    pairs = {(e["expect"], e["step"]) for e in MANIFEST.values()}
    assert pairs == {
        ("ok", None),
        ("malformed", "payload"),
        ("chain_broken", "merge"),
        ("malformed", "verify"),
        ("unknown_sender", "verify"),
    }
    assert {p.name for p in AUDIT.glob("*.bundle")} == {e["file"] for e in MANIFEST.values()}
