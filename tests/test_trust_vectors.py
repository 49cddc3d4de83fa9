"""The certificate-chain vectors in ``bundles/trust-vectors`` (spec §15): each gives its expected
outcome, and the committed files are exactly what ``bundles/make_trust_vectors.py`` writes."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from relay import crypto
from relay.bundle.payload import decode_secrets_payload
from relay.bundle.verify import Trust, open_payload, verify_bundle
from relay.errors import BundleRejected
from relay.identity import PublicIdentity
from relay.trust.chain import RootState

BUNDLES = Path(__file__).resolve().parent.parent / "bundles"
VECTORS = BUNDLES / "trust-vectors"
MANIFEST: dict[str, dict[str, Any]] = json.loads((VECTORS / "manifest.json").read_text())


@cache
def context() -> dict[str, Any]:
    return dict(json.loads((VECTORS / "keys.json").read_text()))


def judge(data: bytes) -> tuple[str, list[list[Any]] | None]:
    ctx = context()
    me = ctx["verifier"]
    keys = crypto.KeyPair(bytes.fromhex(me["sign_seed"]), bytes.fromhex(me["box_secret"]))
    ident = PublicIdentity("agent", me["name"], keys.sign_public, keys.box_public)
    rs = ctx["root_state"]
    state = RootState(
        rs["gateway"],
        rs["version"],
        bytes.fromhex(rs["key"]),
        frozenset(bytes.fromhex(k) for k in rs["known_keys"]),
        rs["revoked"],
        "anchor",
    )
    try:
        bundle = verify_bundle(
            data, Trust(ident, {}, state, ctx["skew"]), ctx["now"], 1 << 20, ("secrets",)
        )
        payload = decode_secrets_payload(open_payload(bundle, keys), 100, 1000)
    except BundleRejected as exc:
        return exc.code, None
    return "ok", [list(r) for r in payload.secrets]


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_trust_vector(name: str) -> None:
    entry = MANIFEST[name]
    outcome, secrets = judge((VECTORS / entry["file"]).read_bytes())
    assert outcome == entry["expect"], entry["note"]
    if outcome == "ok":
        assert secrets == context()["payload"]["secrets"]


def test_every_trust_code_has_a_vector() -> None:
    outcomes = {e["expect"] for e in MANIFEST.values()}
    assert outcomes == {
        "ok",
        "malformed",
        "cert_invalid",
        "cert_expired",
        "cert_not_yet_valid",
        "key_revoked",
        "root_chain_broken",
        "root_rollback",
    }


@pytest.mark.slow  # starts a process
def test_make_trust_vectors_reproduces_the_committed_files(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(BUNDLES / "make_trust_vectors.py"), "--out", str(tmp_path)],
        check=True,
        timeout=120,
    )
    made = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_bytes() for p in VECTORS.iterdir()}
    assert made == committed, "re-run bundles/make_vectors.py"
