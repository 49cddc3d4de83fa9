"""The conformance vectors in ``bundles/vectors``: each gives its expected outcome, and the
committed files are exactly what ``bundles/make_vectors.py`` writes."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from relay import crypto
from relay.bundle.envelope import SIGNING_CONTEXT, parse_envelope, signed_prefix
from relay.bundle.limits import Limits
from relay.bundle.payload import SecretsPayload
from relay.bundle.receive import MemoryStreams, receive_secrets
from relay.bundle.verify import HighWater, Trust
from relay.errors import BundleDuplicate, BundleRejected
from relay.identity import PublicIdentity

BUNDLES = Path(__file__).resolve().parent.parent / "bundles"
VECTORS = BUNDLES / "vectors"
MANIFEST: dict[str, dict[str, Any]] = json.loads((VECTORS / "manifest.json").read_text())


@cache
def context() -> dict[str, Any]:
    return dict(json.loads((VECTORS / "keys.json").read_text()))


def party(label: str) -> tuple[PublicIdentity, crypto.KeyPair]:
    p = context()["parties"][label]
    keys = crypto.KeyPair(bytes.fromhex(p["sign_seed"]), bytes.fromhex(p["box_secret"]))
    return PublicIdentity(p["role"], p["name"], keys.sign_public, keys.box_public), keys


def run_vector(data: bytes) -> tuple[str, str | None, SecretsPayload | None]:
    """(outcome, deciding stage, payload) as the agent's receive pipeline judges ``data``."""
    ctx = context()
    me, my_keys = party(ctx["verifier"])
    senders = {ident.key_id: ident for ident, _ in map(party, ctx["trusted_senders"])}
    limits = ctx["limits"]
    stream = ctx["stream"]
    high_water = HighWater(stream["high_water"]["seq"], stream["high_water"]["bundle_id"])
    assert tuple(ctx["kinds"]) == ("secrets",)
    key = high_water_key(ctx)
    applied_in = {bundle_id: (key, seq) for bundle_id, seq in stream["applied_seq"].items()}
    streams = MemoryStreams({(key, "secrets"): high_water}, set(stream["applied"]), applied_in)
    stages: list[str] = []
    try:
        received = receive_secrets(
            data,
            Trust(me, senders),
            my_keys,
            streams,
            ctx["now"],
            Limits(limits["max_bundle_bytes"], limits["max_secret_bytes"], limits["max_entries"]),
            stages.append,
        )
    except (BundleDuplicate, BundleRejected) as exc:
        return exc.code, stages[-1], None
    return "ok", None, received.payload


def high_water_key(ctx: dict[str, Any]) -> str:
    """The sender key id whose stream the vectors' high-water mark belongs to."""
    (sender,) = ctx["trusted_senders"]
    return party(sender)[0].key_id


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_vector(name: str) -> None:
    entry = MANIFEST[name]
    data = (VECTORS / entry["file"]).read_bytes()
    outcome, step, payload = run_vector(data)
    assert (outcome, step) == (entry["expect"], entry["step"]), entry["note"]
    if outcome == "ok":
        assert payload is not None
        want = entry["payload"]
        assert [list(r) for r in payload.secrets] == want["secrets"]
        assert [list(r) for r in payload.tombstones] == want["tombstones"]
        assert payload.audit_ack == want["ack"]["audit_seq"]
        assert [list(r) for r in payload.versions] == want.get("versions", [])
        assert payload.delta == (want.get("state") == "delta")


def test_every_outcome_is_covered() -> None:
    outcomes = {entry["expect"] for entry in MANIFEST.values()}
    assert outcomes == {
        "ok",
        "duplicate",
        "malformed",
        "too_large",
        "unknown_sender",
        "bad_signature",
        "wrong_recipient",
        "expired",
        "rollback",
        "decrypt_failed",
        "delta_base_missing",
    }
    assert {p.name for p in VECTORS.glob("*.bundle")} == {e["file"] for e in MANIFEST.values()}


def test_keys_json_derivations() -> None:
    """Key ids, fingerprints and the signed prefix in keys.json follow the spec's definitions."""
    for label, p in context()["parties"].items():
        ident, _ = party(label)
        assert ident.sign_public.hex() == p["sign_public"]
        assert ident.box_public.hex() == p["box_public"]
        publics = ident.sign_public + ident.box_public
        key_id = hashlib.sha256(b"relay-key-id-v1\x00" + publics).hexdigest()[:16]
        digest = hashlib.sha256(b"relay-fingerprint-v1\x00" + publics).digest()
        assert ident.key_id == key_id == p["key_id"]
        fingerprint = "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
        assert ident.fingerprint == fingerprint == p["fingerprint"]
    assert context()["signing_context_hex"] == SIGNING_CONTEXT.hex()
    latest = (VECTORS / "duplicate-latest.bundle").read_bytes()
    envelope = parse_envelope(latest)
    assert signed_prefix(envelope.header).hex() == context()["example_signed_prefix_hex"]
    assert envelope.bundle_id == context()["stream"]["high_water"]["bundle_id"]


@pytest.mark.slow
def test_make_vectors_reproduces_the_committed_files(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(BUNDLES / "make_vectors.py"), "--out", str(tmp_path)],
        check=True,
        timeout=120,
    )
    made = {str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*.*")}
    committed = {str(p.relative_to(VECTORS)): p.read_bytes() for p in VECTORS.rglob("*.*")}
    assert sorted(made) == sorted(committed)
    for name, data in made.items():
        assert data == committed[name], f"{name} differs: re-run bundles/make_vectors.py"


def test_the_spec_example_header_is_the_vector_header() -> None:
    spec = (BUNDLES.parent / "docs" / "spec" / "bundle-v1.md").read_text()
    prefix = bytes.fromhex(context()["example_signed_prefix_hex"])
    assert prefix[:12] == b"RELAYBv1" + (len(prefix) - 12).to_bytes(4, "big")
    assert f"    {prefix[12:].decode('ascii')}\n" in spec
