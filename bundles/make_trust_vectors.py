"""Write the certificate-chain vectors (``docs/spec/bundle-v1.md`` §15) into ``trust-vectors/``.

Deterministic like ``make_vectors.py`` (which runs this too): keys from fixed labels, nonces
from the vector's name, the fixed ``NOW``. The verifier is the agent ``plant7`` that pinned the
gateway ``hq``'s root at version 2 (it knew root 1 before), and holds a revocation of an old
signing key up to serial 1.

Output: ``NAME.bundle``, ``manifest.json`` (expect, step, note) and ``keys.json`` (the parties'
keys and the root state: version, key, every root key ever trusted, revocations).

Usage: ``python bundles/make_trust_vectors.py [--out DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay import crypto
from relay.bundle.envelope import Header
from relay.bundle.payload import SecretsPayload
from relay.bundle.seal import sign_header
from relay.trust.documents import (
    SIGNING_ROLE,
    Cert,
    Revocation,
    Root,
    TrustSection,
    root_fingerprint,
    sign_cert,
    sign_revocation,
    sign_root,
)

NOW = 1_800_000_000
CREATED = NOW - 3600
EXPIRES = NOW + 7 * 86400
GATEWAY = "hq"
AGENT = "plant7"
PINNED_VERSION = 2


def _keys(label: str) -> crypto.KeyPair:
    return crypto.KeyPair(
        hashlib.sha256(f"relay-trust-vectors-v1/{label}/sign".encode()).digest(),
        hashlib.sha256(f"relay-trust-vectors-v1/{label}/box".encode()).digest(),
    )


ROOT1, ROOT2, ROOT3, ROOT4 = (_keys(f"root-{n}") for n in range(1, 5))
ROGUE_ROOT = _keys("rogue-root")
SIGNING, SIGNING_NEXT, SIGNING_OLD = _keys("signing"), _keys("signing-next"), _keys("signing-old")
AGENT_KEYS = _keys("agent")

R2 = sign_root(GATEWAY, 2, ROOT2, ROOT1)
R3 = sign_root(GATEWAY, 3, ROOT3, ROOT2)
R4_AFTER_3 = sign_root(GATEWAY, 4, ROOT4, ROOT3)
R3_LOOP = sign_root(GATEWAY, 3, ROOT1, ROOT2)  # root 1's key comes back
R3_FORGED = sign_root(GATEWAY, 3, ROOT3, ROGUE_ROOT)  # not signed by root 2
R3_OTHER_GATEWAY = sign_root("hq2", 3, ROOT3, ROOT2)


def cert(
    root: crypto.KeyPair = ROOT2,
    keys: crypto.KeyPair = SIGNING,
    *,
    serial: int = 4,
    version: int = PINNED_VERSION,
    role: str = SIGNING_ROLE,
    gateway: str = GATEWAY,
    not_before: int = NOW - 86400,
    not_after: int = NOW + 90 * 86400,
) -> Cert:
    unsigned = Cert(
        gateway,
        role,
        serial,
        keys.sign_public,
        keys.box_public,
        not_before,
        not_after,
        version,
        b"",
    )
    return sign_cert(root, unsigned)


def revocation(
    keys: crypto.KeyPair, serial: int, root: crypto.KeyPair = ROOT2, version: int = 2
) -> Revocation:
    key_id = crypto.key_id(keys.sign_public, keys.box_public)
    return sign_revocation(root, Revocation(GATEWAY, key_id, serial, version, b""))


@dataclass(frozen=True)
class TrustRecipe:
    """A bundle from ``signer`` to the agent carrying ``section`` (or no section)."""

    name: str
    section: TrustSection | None
    signer: crypto.KeyPair = SIGNING
    seq: int = 6
    trust_json: dict[str, Any] | None = None  # raw override (malformed cases)

    def build(self) -> bytes:
        nonce = hashlib.sha256(f"relay-trust-vectors-v1/nonce/{self.name}".encode()).digest()
        plaintext = PAYLOAD.encode()
        payload = crypto.seal(self.signer, AGENT_KEYS.box_public, plaintext, nonce[:24])
        trust = self.trust_json
        if trust is None and self.section is not None:
            trust = self.section.to_json()
        header = Header(
            kind="secrets",
            sender=GATEWAY,
            sender_key=crypto.key_id(self.signer.sign_public, self.signer.box_public),
            recipient=AGENT,
            recipient_key=crypto.key_id(AGENT_KEYS.sign_public, AGENT_KEYS.box_public),
            seq=self.seq,
            created=CREATED,
            expires=EXPIRES,
            payload_len=len(payload),
            payload_sha256=crypto.sha256(payload).hex(),
            trust=trust,
        )
        return sign_header(header, self.signer, payload)


PAYLOAD = SecretsPayload(secrets=[("db/plant7/password", 3, "aHVudGVyMg==", None)])


def section(
    c: Cert | None = None, roots: tuple[Root, ...] = (), revs: tuple[Revocation, ...] = ()
) -> TrustSection:
    return TrustSection(roots, c or cert(), revs)


def _cases() -> list[tuple[str, TrustRecipe, str, str]]:
    """(name, recipe, expect, note)."""
    r3_cert = cert(ROOT3, version=3)
    ok = [
        ("ok-cert", TrustRecipe("ok-cert", section()), "ok", "signing key certified by root 2"),
        (
            "ok-root-rotation",
            TrustRecipe("ok-root-rotation", section(r3_cert, (R2, R3))),
            "ok",
            "root 3 signed by root 2 (root 2 repeated: ignored); cert by root 3",
        ),
        (
            "ok-two-roots-ahead",
            TrustRecipe("ok-two-roots-ahead", section(cert(ROOT4, version=4), (R3, R4_AFTER_3))),
            "ok",
            "the agent walks two roots, one step at a time",
        ),
        (
            "ok-revocation-replayed-after-recertification",
            TrustRecipe(
                "ok-revocation-replayed-after-recertification",
                section(cert(serial=6), revs=(revocation(SIGNING, 5),)),
            ),
            "ok",
            "the key was revoked up to serial 5, then certified again as serial 6",
        ),
        (
            "ok-skew-edge",
            TrustRecipe("ok-skew-edge", section(cert(not_after=NOW))),
            "ok",
            "certificate valid up to and including now",
        ),
    ]
    bad = [
        (
            "key-revoked",
            TrustRecipe("key-revoked", section(revs=(revocation(SIGNING, 4),))),
            "key_revoked",
            "the bundle carries a revocation of its own key up to its cert serial",
        ),
        (
            "key-revoked-high-seq",
            TrustRecipe(
                "key-revoked-high-seq", section(revs=(revocation(SIGNING, 4),)), seq=999_999
            ),
            "key_revoked",
            "a revoked key is refused whatever its seq",
        ),
        (
            "key-revoked-before",
            TrustRecipe(
                "key-revoked-before", section(cert(keys=SIGNING_OLD, serial=1)), SIGNING_OLD
            ),
            "key_revoked",
            "revoked in an earlier bundle (the agent's state), no revocation carried now",
        ),
        (
            "cert-expired",
            TrustRecipe("cert-expired", section(cert(not_after=NOW - 1))),
            "cert_expired",
            "certificate not_after one second before now",
        ),
        (
            "cert-not-yet-valid",
            TrustRecipe("cert-not-yet-valid", section(cert(not_before=NOW + 1))),
            "cert_not_yet_valid",
            "certificate not_before one second after now",
        ),
        (
            "cert-wrong-root",
            TrustRecipe("cert-wrong-root", section(cert(ROGUE_ROOT))),
            "cert_invalid",
            "certificate signed by a root the agent does not trust",
        ),
        (
            "cert-wrong-role",
            TrustRecipe("cert-wrong-role", section(cert(role="audit"))),
            "cert_invalid",
            "certificate for another role",
        ),
        (
            "cert-wrong-gateway",
            TrustRecipe("cert-wrong-gateway", section(cert(gateway="hq2"))),
            "cert_invalid",
            "certificate for gateway hq2 from hq's root",
        ),
        (
            "cert-other-key",
            TrustRecipe("cert-other-key", section(cert(keys=SIGNING_NEXT))),
            "cert_invalid",
            "certificate for another key than the one that signed the bundle",
        ),
        (
            "cert-missing",
            TrustRecipe("cert-missing", None),
            "cert_invalid",
            "no trust section: a rooted agent needs a certificate",
        ),
        (
            "root-chain-gap",
            TrustRecipe("root-chain-gap", section(cert(ROOT4, version=4), (R4_AFTER_3,))),
            "root_chain_broken",
            "root 4 without root 3: a gap",
        ),
        (
            "root-chain-ahead",
            TrustRecipe("root-chain-ahead", section(r3_cert)),
            "root_chain_broken",
            "certificate by root 3, which the chain does not carry",
        ),
        (
            "root-chain-loop",
            TrustRecipe("root-chain-loop", section(cert(ROOT1, version=3), (R3_LOOP,))),
            "root_chain_broken",
            "root 3 is root 1's key again (a loop)",
        ),
        (
            "root-chain-forged",
            TrustRecipe("root-chain-forged", section(r3_cert, (R3_FORGED,))),
            "root_chain_broken",
            "root 3 not signed by root 2",
        ),
        (
            "root-chain-other-gateway",
            TrustRecipe("root-chain-other-gateway", section(r3_cert, (R3_OTHER_GATEWAY,))),
            "root_chain_broken",
            "root 3 of another gateway",
        ),
        (
            "root-rollback",
            TrustRecipe("root-rollback", section(cert(ROOT1, version=1))),
            "root_rollback",
            "certificate by root 1, older than the pinned root 2",
        ),
        (
            "malformed-trust-section",
            TrustRecipe("malformed-trust-section", None, trust_json={"v": 1, "roots": []}),
            "malformed",
            "trust section without cert and revocations",
        ),
    ]
    return ok + bad


def build() -> tuple[dict[str, bytes], dict[str, Any], dict[str, Any]]:
    """(files, manifest, context)."""
    files: dict[str, bytes] = {}
    manifest: dict[str, Any] = {}
    for name, recipe, expect, note in _cases():
        files[f"{name}.bundle"] = recipe.build()
        manifest[name] = {
            "file": f"{name}.bundle",
            "expect": expect,
            "step": None if expect == "ok" else "verify",
            "note": note,
        }
    old_id = crypto.key_id(SIGNING_OLD.sign_public, SIGNING_OLD.box_public)
    context = {
        "format": "relay bundle v1 certificate-chain vectors (spec section 15)",
        "now": NOW,
        "skew": 0,
        "verifier": _party(AGENT_KEYS, "agent", AGENT),
        "root_state": {
            "gateway": GATEWAY,
            "version": PINNED_VERSION,
            "key": ROOT2.sign_public.hex(),
            "fingerprint": root_fingerprint(ROOT2.sign_public),
            "known_keys": [ROOT1.sign_public.hex(), ROOT2.sign_public.hex()],
            "revoked": {old_id: 1},
        },
        "roots": {
            f"root-{n}": k.sign_seed.hex()
            for n, k in enumerate((ROOT1, ROOT2, ROOT3, ROOT4), start=1)
        },
        "signing": _party(SIGNING, "gateway", GATEWAY),
        "payload": {"secrets": [list(r) for r in PAYLOAD.secrets]},
    }
    return files, manifest, context


def _party(keys: crypto.KeyPair, role: str, name: str) -> dict[str, str]:
    return {
        "role": role,
        "name": name,
        "sign_seed": keys.sign_seed.hex(),
        "box_secret": keys.box_secret.hex(),
        "key_id": crypto.key_id(keys.sign_public, keys.box_public),
    }


def write(out: Path) -> None:
    """Write every vector, ``manifest.json`` and ``keys.json`` into ``out``."""
    files, manifest, context = build()
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    for name, value in (("manifest.json", manifest), ("keys.json", context)):
        (out / name).write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", "utf-8")


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "trust-vectors")
    write(parser.parse_args().out)


if __name__ == "__main__":
    main()
