"""Write the bundle v1 conformance vectors (``docs/spec/bundle-v1.md`` §14) into ``vectors/``.

Deterministic: keys come from fixed labels, every nonce from the vector's name, and the clock is
the fixed ``NOW``. Running this script twice gives the same bytes, and ``tests/test_vectors.py``
checks that the committed files are exactly what it writes.

Output:

- ``vectors/NAME.bundle``: one bundle file per vector.
- ``vectors/manifest.json``: per vector ``expect`` (``ok``, ``duplicate`` or a reason code), the
  ``step`` that decides it (``verify``, ``sequence``, ``decrypt``, ``payload``; none for ``ok``),
  a note, and for ``ok`` the decoded payload.
- ``vectors/keys.json``: the trust context: seeds and public keys, ``now``, the limits, the kinds
  the verifier accepts, and the stream state (high-water mark, the applied bundle ids and the seq
  each was applied under, which a delta's base is judged against).
- ``vectors/audit/``: the audit payload vectors (§9), made by ``audit_vectors.py``.

Usage: ``python bundles/make_vectors.py [--out DIR]``. Without ``--out`` it also runs
``make_trust_vectors.py`` (certificate chains, spec §15, into ``trust-vectors/``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay import crypto
from relay.bundle.envelope import (
    MAGIC,
    SIGNING_CONTEXT,
    BundleBase,
    Header,
    parse_envelope,
    signed_prefix,
)
from relay.bundle.payload import SecretsPayload
from relay.bundle.seal import sign_header
from relay.canonical import canonical_json
from relay.identity import PublicIdentity, identity_of

NOW = 1_800_000_000  # 2027-01-15T08:00:00Z
CREATED = NOW - 3600
EXPIRES = NOW + 7 * 86400
LIMITS = {"max_bundle_bytes": 4096, "max_entries": 16, "max_secret_bytes": 64}
HIGH_WATER_SEQ = 5


def _keys(label: str) -> crypto.KeyPair:
    """Fixed key pair for ``label``: seeds are SHA-256 of ``relay-vectors-v1/LABEL/{sign,box}``."""
    return crypto.KeyPair(
        hashlib.sha256(f"relay-vectors-v1/{label}/sign".encode()).digest(),
        hashlib.sha256(f"relay-vectors-v1/{label}/box".encode()).digest(),
    )


@dataclass(frozen=True)
class Party:
    """A named key pair and its public identity."""

    label: str
    keys: crypto.KeyPair
    identity: PublicIdentity

    def to_json(self, trusted: str) -> dict[str, str]:
        ident = self.identity
        return {
            "role": ident.role,
            "name": ident.name,
            "sign_seed": self.keys.sign_seed.hex(),
            "box_secret": self.keys.box_secret.hex(),
            "sign_public": ident.sign_public.hex(),
            "box_public": ident.box_public.hex(),
            "key_id": ident.key_id,
            "fingerprint": ident.fingerprint,
            "trust": trusted,
        }


def _party(label: str, role: str, name: str) -> Party:
    keys = _keys(label)
    return Party(label, keys, identity_of(role, name, keys))


GATEWAY = _party("gateway", "gateway", "hq")
AGENT = _party("agent", "agent", "plant7")
OTHER_AGENT = _party("other-agent", "agent", "plant8")
ROGUE = _party("rogue", "gateway", "rogue")
IMPOSTOR = _party("impostor", "gateway", "hq")  # the gateway's name, other keys
PARTIES = {
    GATEWAY.label: (GATEWAY, "pinned sender (the agent trusts it)"),
    AGENT.label: (AGENT, "the verifier: recipient of the stream"),
    OTHER_AGENT.label: (OTHER_AGENT, "another agent, not the verifier"),
    ROGUE.label: (ROGUE, "not trusted"),
    IMPOSTOR.label: (IMPOSTOR, "not trusted; claims the gateway's name"),
}

DEFAULT_PAYLOAD = SecretsPayload(
    secrets=[
        ("db/plant7/password", 3, "aHVudGVyMg==", None),
        ("tls/plant7/key.pem", 1, "LS0tLS1CRUdJTi0tLS0t", NOW + 30 * 86400),
        ("app/token", 12, "", None),
    ],
)


def _payload_json(payload: SecretsPayload) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "secrets": [list(row) for row in payload.secrets],
        "tombstones": [list(row) for row in payload.tombstones],
        "ack": {"audit_seq": payload.audit_ack},
    }
    if payload.versions:
        doc["versions"] = [list(row) for row in payload.versions]
    if payload.delta:
        doc["state"] = "delta"
    return doc


@dataclass
class Vector:
    """One vector: its bytes and what a conforming verifier must say about them."""

    name: str
    data: bytes
    expect: str
    step: str | None
    note: str
    payload: SecretsPayload | None = None

    def manifest_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "file": f"{self.name}.bundle",
            "expect": self.expect,
            "step": self.step,
            "note": self.note,
        }
        if self.payload is not None:
            entry["payload"] = _payload_json(self.payload)
        return entry


@dataclass
class Recipe:
    """The ingredients of one bundle; the defaults make a valid bundle from GATEWAY to AGENT."""

    name: str
    seq: int = 6
    kind: str = "secrets"
    sender: Party = GATEWAY
    signer: Party | None = None  # signs the header (default: sender)
    boxer: Party | None = None  # seals the payload (default: sender)
    recipient: Party = AGENT
    box_to: Party | None = None  # the key the payload is sealed to (default: recipient)
    created: int = CREATED
    expires: int = EXPIRES
    plaintext: bytes = field(default_factory=DEFAULT_PAYLOAD.encode)
    base: BundleBase | None = None  # a delta's base (spec §8.3)

    def nonce(self) -> bytes:
        return hashlib.sha256(f"relay-vectors-v1/nonce/{self.name}".encode()).digest()[:24]

    def sealed(self) -> bytes:
        boxer = self.boxer or self.sender
        box_to = self.box_to or self.recipient
        return crypto.seal(boxer.keys, box_to.identity.box_public, self.plaintext, self.nonce())

    def header(self, payload: bytes) -> Header:
        return Header(
            kind=self.kind,
            sender=self.sender.identity.name,
            sender_key=self.sender.identity.key_id,
            recipient=self.recipient.identity.name,
            recipient_key=self.recipient.identity.key_id,
            seq=self.seq,
            created=self.created,
            expires=self.expires,
            payload_len=len(payload),
            payload_sha256=crypto.sha256(payload).hex(),
            base=self.base,
        )

    def build(self) -> bytes:
        payload = self.sealed()
        return sign_header(self.header(payload), (self.signer or self.sender).keys, payload)


def sign_raw(body: bytes, keys: crypto.KeyPair, payload: bytes) -> bytes:
    """A bundle around arbitrary header bytes, validly signed: for malformed headers."""
    prefix = MAGIC + struct.pack(">I", len(body)) + body
    return prefix + crypto.sign(keys, SIGNING_CONTEXT + prefix) + payload


def _raw_header(recipe: Recipe, edit: dict[str, Any], drop: str | None = None) -> bytes:
    """A validly signed bundle whose header JSON is ``recipe``'s with ``edit`` applied."""
    payload = recipe.sealed()
    doc = recipe.header(payload).to_json()
    doc.update(edit)
    if drop is not None:
        del doc[drop]
    return sign_raw(canonical_json(doc), GATEWAY.keys, payload)


def _header_text(recipe: Recipe, transform: Any) -> bytes:
    """A validly signed bundle whose header text is ``transform(canonical header text)``."""
    payload = recipe.sealed()
    text = canonical_json(recipe.header(payload).to_json()).decode("ascii")
    return sign_raw(transform(text).encode("ascii"), GATEWAY.keys, payload)


def _payload_len_as(recipe: Recipe, text: str) -> bytes:
    """A validly signed bundle whose header gives ``payload_len`` as the JSON ``text``."""
    return _header_text(
        recipe, lambda t: re.sub(r'"payload_len":\d+', lambda _m: f'"payload_len":{text}', t)
    )


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


def _signature_at(data: bytes) -> int:
    """The offset of the signature in a well-formed bundle."""
    return len(parse_envelope(data).signed)


def _ok_vectors() -> list[Vector]:
    tombs = SecretsPayload(
        secrets=[("db/plant7/password", 4, "bmV3LXBhc3N3b3Jk", None)],
        tombstones=[("tls/plant7/key.pem", 2), ("app/token", 13)],
        audit_ack=41,
    )
    empty = SecretsPayload(secrets=[])
    extra = b'{"ack":{"audit_seq":2},"policies":{"future":[1.5,null]},"secrets":[["a",1,"YQ==",null]],"state":"full","tombstones":[],"v":1}'  # noqa: E501
    return [
        Vector(
            "ok-secrets",
            Recipe("ok-secrets").build(),
            "ok",
            None,
            "three secrets, one with an expiry, one empty value",
            DEFAULT_PAYLOAD,
        ),
        Vector(
            "ok-tombstones",
            Recipe("ok-tombstones", seq=7, plaintext=tombs.encode()).build(),
            "ok",
            None,
            "one secret and two tombstones, audit ack 41",
            tombs,
        ),
        Vector(
            "ok-empty-state",
            Recipe("ok-empty-state", seq=8, plaintext=empty.encode()).build(),
            "ok",
            None,
            "full state with no secrets: the agent removes everything",
            empty,
        ),
        Vector(
            "ok-unknown-payload-key",
            Recipe("ok-unknown-payload-key", seq=9, plaintext=extra).build(),
            "ok",
            None,
            "unknown top-level payload key (with a float inside) is ignored",
            SecretsPayload([("a", 1, "YQ==", None)], [], 2),
        ),
        Vector(
            "ok-expires-now",
            Recipe("ok-expires-now", seq=10, expires=NOW).build(),
            "ok",
            None,
            "expires == now is still valid (expired means now > expires)",
            DEFAULT_PAYLOAD,
        ),
    ]


def _envelope_vectors() -> list[Vector]:
    good = Recipe("malformed-base").build()
    sig_at = _signature_at(good)
    cases: list[tuple[str, bytes, str]] = [
        ("empty", b"", "zero bytes"),
        ("truncated-prefix", good[:11], "shorter than magic + header length"),
        ("truncated-header", good[: sig_at - 20], "ends inside the header"),
        ("truncated-signature", good[: sig_at + 10], "ends inside the signature"),
        ("truncated-payload", good[:-1], "last payload byte missing"),
        ("trailing-bytes", good + b"\n", "one byte after the declared payload"),
        ("bad-magic", b"RELAYBv2" + good[8:], "magic of another version"),
        ("header-length-zero", good[:8] + b"\0\0\0\0" + good[12:], "header length 0"),
        (
            "header-length-huge",
            good[:8] + b"\xff\xff\xff\xff" + good[12:],
            "header length over 65536",
        ),
    ]
    base = Recipe("malformed-header")
    cases += [
        (
            "header-space",
            _header_text(base, lambda t: t.replace(",", ", ", 1)),
            "non-canonical: a space after a comma",
        ),
        ("header-unsorted", _header_text(base, _unsort), "non-canonical: keys not sorted"),
        (
            "header-escaped",
            _header_text(base, lambda t: t.replace('"hq"', '"\\u0068q"')),
            "non-canonical: needless \\u escape",
        ),
        ("header-extra-field", _raw_header(base, {"note": "x"}), "a field v1 does not have"),
        ("header-missing-field", _raw_header(base, {}, drop="expires"), "no expires field"),
        ("header-bool-for-int", _raw_header(base, {"seq": True}), "seq is true"),
        ("header-string-for-int", _raw_header(base, {"seq": "6"}), "seq is a string"),
        (
            "header-float",
            _header_text(base, lambda t: t.replace(f"{CREATED}", f"{CREATED}.0")),
            "created is a float",
        ),
        ("header-negative", _raw_header(base, {"created": -1}), "created is negative"),
        ("header-int-too-big", _raw_header(base, {"seq": 2**53}), "seq over 2^53 - 1"),
        ("header-bad-version", _raw_header(base, {"v": 2}), "v is 2"),
        ("header-unknown-kind", _raw_header(base, {"kind": "policy"}), "kind not in v1"),
        ("header-seq-zero", _raw_header(base, {"seq": 0}), "seq starts at 1"),
        (
            "header-expires-before-created",
            _raw_header(base, {"expires": CREATED - 1}),
            "validity window reversed",
        ),
        ("header-bad-name", _raw_header(base, {"sender": "HQ"}), "upper case name"),
        (
            "header-name-newline",
            _raw_header(base, {"sender": "hq\n"}),
            "trailing newline in a name",
        ),
        (
            "header-bad-key-id",
            _raw_header(base, {"sender_key": "ABCDEF0123456789"}),
            "key id not lower-case hex",
        ),
        ("header-bad-hash", _raw_header(base, {"payload_sha256": "00"}), "hash not 64 hex"),
        (
            "header-not-json",
            sign_raw(b"not json", GATEWAY.keys, base.sealed()),
            "header is not JSON",
        ),
        (
            "header-not-object",
            sign_raw(b"[]", GATEWAY.keys, base.sealed()),
            "header is a JSON array",
        ),
        ("header-payload-too-short", _short_payload(), "payload_len 39 < 24 + 16"),
    ]
    cases += [
        (f"header-payload-len-{name}", _payload_len_as(base, text), note)
        for name, text, note in (
            ("exponent", "1e999", "payload_len 1e999: a float that overflows to infinity"),
            ("float", "241.0", "payload_len is a float"),
            ("negative", "-241", "payload_len is negative"),
            ("string", '"241"', "payload_len is a string"),
            ("huge", "9" * 400, "payload_len has 400 digits"),
            ("nested", "[" * 1500 + "]" * 1500, "payload_len nested 1500 levels deep"),
        )
    ]
    vectors = [
        Vector(f"malformed-{name}", data, "malformed", "verify", note) for name, data, note in cases
    ]
    audit = Recipe("malformed-unexpected-kind", kind="audit").build()
    vectors.append(
        Vector(
            "malformed-unexpected-kind",
            audit,
            "malformed",
            "verify",
            "a valid audit bundle, but the verifier accepts only secrets",
        )
    )
    return vectors


def _unsort(text: str) -> str:
    doc = json.loads(text)
    return json.dumps(dict(reversed(list(doc.items()))), separators=(",", ":"))


def _short_payload() -> bytes:
    payload = bytes(39)
    recipe = Recipe("malformed-header-payload-too-short")
    doc = recipe.header(payload).to_json()
    return sign_raw(canonical_json(doc), GATEWAY.keys, payload)


def _authentication_vectors() -> list[Vector]:
    big = SecretsPayload([("filler", 1, "QUFB" * 16, None)] * 1, []).encode()
    big = big[:-1] + b',"padding":"' + b"x" * LIMITS["max_bundle_bytes"] + b'"}'
    header_tamper = Recipe("bad-signature-header-byte", seq=12).build()
    header_tamper = header_tamper.replace(b'"seq":12', b'"seq":13', 1)
    payload_tamper = Recipe("bad-signature-payload-byte").build()
    sig_tamper = Recipe("bad-signature-signature-byte").build()
    sig_at = _signature_at(sig_tamper)
    expired_tamper = Recipe("bad-signature-expired", expires=NOW - 1).build()
    return [
        Vector(
            "too-large",
            Recipe("too-large", plaintext=big).build(),
            "too_large",
            "verify",
            f"valid, but over max_bundle_bytes = {LIMITS['max_bundle_bytes']}",
        ),
        Vector(
            "unknown-sender",
            Recipe("unknown-sender", sender=ROGUE).build(),
            "unknown_sender",
            "verify",
            "signed by a key the agent never pinned",
        ),
        Vector(
            "unknown-sender-same-name",
            Recipe("unknown-sender-same-name", sender=IMPOSTOR).build(),
            "unknown_sender",
            "verify",
            "the gateway's name with the impostor's key id and signature",
        ),
        Vector(
            "unknown-sender-other-name",
            _raw_header(Recipe("unknown-sender-other-name"), {"sender": "hq2"}),
            "unknown_sender",
            "verify",
            "the pinned key id under another name, signed by the gateway",
        ),
        Vector(
            "unknown-sender-expired",
            Recipe("unknown-sender-expired", sender=ROGUE, expires=NOW - 1).build(),
            "unknown_sender",
            "verify",
            "an untrusted sender's expired bundle: sender is judged first",
        ),
        Vector(
            "bad-signature-header-byte",
            header_tamper,
            "bad_signature",
            "verify",
            "seq 12 changed to 13 after signing (still canonical)",
        ),
        Vector(
            "bad-signature-payload-byte",
            _flip(payload_tamper, len(payload_tamper) - 1),
            "bad_signature",
            "verify",
            "last payload byte flipped: hash differs",
        ),
        Vector(
            "bad-signature-signature-byte",
            _flip(sig_tamper, sig_at + 5),
            "bad_signature",
            "verify",
            "one signature bit flipped",
        ),
        Vector(
            "bad-signature-other-key",
            Recipe("bad-signature-other-key", signer=IMPOSTOR).build(),
            "bad_signature",
            "verify",
            "names the gateway's key but is signed by another key",
        ),
        Vector(
            "bad-signature-expired",
            _flip(expired_tamper, len(expired_tamper) - 1),
            "bad_signature",
            "verify",
            "tampered and expired: authenticate before judging",
        ),
    ]


def _judgement_vectors() -> list[Vector]:
    wrong_name = Recipe("wrong-recipient-other-name")
    return [
        Vector(
            "wrong-recipient",
            Recipe("wrong-recipient", recipient=OTHER_AGENT).build(),
            "wrong_recipient",
            "verify",
            "addressed and sealed to plant8",
        ),
        Vector(
            "wrong-recipient-other-name",
            _raw_header(wrong_name, {"recipient": "plant8"}),
            "wrong_recipient",
            "verify",
            "the agent's key id under another name",
        ),
        Vector(
            "wrong-recipient-expired",
            Recipe("wrong-recipient-expired", recipient=OTHER_AGENT, expires=NOW - 1).build(),
            "wrong_recipient",
            "verify",
            "recipient is judged before expiry",
        ),
        Vector(
            "expired",
            Recipe("expired", expires=NOW - 1).build(),
            "expired",
            "verify",
            "expires one second before now",
        ),
        Vector(
            "expired-and-rollback",
            Recipe("expired-and-rollback", seq=4, expires=NOW - 1).build(),
            "expired",
            "verify",
            "expiry is judged before seq",
        ),
        Vector(
            "rollback",
            Recipe("rollback", seq=4).build(),
            "rollback",
            "sequence",
            f"seq 4, never applied, below the high-water mark {HIGH_WATER_SEQ}",
        ),
        Vector(
            "rollback-same-seq",
            Recipe("rollback-same-seq", seq=HIGH_WATER_SEQ).build(),
            "rollback",
            "sequence",
            "seq equal to the high-water mark, another bundle id",
        ),
    ]


def _stream_vectors() -> tuple[list[Vector], bytes, bytes]:
    latest = Recipe("duplicate-latest", seq=HIGH_WATER_SEQ).build()
    old = Recipe("duplicate-old", seq=3).build()
    tampered = _flip(latest, len(latest) - 1)
    vectors = [
        Vector(
            "duplicate-latest",
            latest,
            "duplicate",
            "sequence",
            "the bundle that set the high-water mark, again",
        ),
        Vector(
            "duplicate-old",
            old,
            "duplicate",
            "sequence",
            "seq 3, applied earlier (in the applied set): a skip, not a rollback",
        ),
        Vector(
            "bad-signature-tampered-duplicate",
            tampered,
            "bad_signature",
            "verify",
            "the applied bundle with a payload byte flipped: same bundle id, never duplicate",
        ),
    ]
    return vectors, latest, old


def _delta_vectors(latest: bytes, old: bytes) -> list[Vector]:
    """Delta bundles (spec §8.3): the base is the high-water bundle (seq 5) or an older applied
    one (seq 3); anything else is ``delta_base_missing``, judged at the sequence step."""
    latest_base = BundleBase(parse_envelope(latest).bundle_id, HIGH_WATER_SEQ)
    old_base = BundleBase(parse_envelope(old).bundle_id, 3)
    unknown = BundleBase(hashlib.sha256(b"relay-vectors-v1/never-applied").hexdigest(), 4)
    delta = SecretsPayload(
        [("db/plant7/password", 5, "ZGVsdGE=", None)], [("app/token", 14)], 42, delta=True
    )
    full = DEFAULT_PAYLOAD.encode()

    def recipe(name: str, base: BundleBase | None, **more: Any) -> Recipe:
        return Recipe(name, base=base, plaintext=more.pop("plaintext", delta.encode()), **more)

    bad_base = recipe("malformed-header-base-bad-id", latest_base)
    return [
        Vector(
            "ok-delta",
            recipe("ok-delta", latest_base).build(),
            "ok",
            None,
            "a delta on the high-water bundle: one upsert, one removal",
            delta,
        ),
        Vector(
            "ok-delta-older-base",
            recipe("ok-delta-older-base", old_base, seq=7).build(),
            "ok",
            None,
            "a delta on an older applied bundle of the stream (deltas are cumulative)",
            delta,
        ),
        Vector(
            "delta-base-missing",
            recipe("delta-base-missing", unknown).build(),
            "delta_base_missing",
            "sequence",
            "the base was never applied",
        ),
        Vector(
            "delta-base-wrong-seq",
            recipe("delta-base-wrong-seq", BundleBase(latest_base.id, 4)).build(),
            "delta_base_missing",
            "sequence",
            "the applied high-water bundle named under another seq",
        ),
        Vector(
            "rollback-delta",
            recipe("rollback-delta", old_base, seq=4).build(),
            "rollback",
            "sequence",
            "a delta is judged for rollback before its base",
        ),
        Vector(
            "malformed-header-base-not-older",
            recipe("malformed-header-base-not-older", BundleBase(latest_base.id, 6)).build(),
            "malformed",
            "verify",
            "base seq equal to the bundle's seq",
        ),
        Vector(
            "malformed-header-base-bad-id",
            _raw_header(bad_base, {"base": {"id": "x" * 64, "seq": 5}}),
            "malformed",
            "verify",
            "base id is not 64 lower-case hex digits",
        ),
        Vector(
            "malformed-payload-full-with-base",
            recipe("malformed-payload-full-with-base", latest_base, plaintext=full).build(),
            "malformed",
            "payload",
            "a full-state payload in a bundle with a base",
        ),
    ]


def _decrypt_vectors() -> list[Vector]:
    garbage = Recipe("decrypt-failed-garbage")
    junk = hashlib.sha512(b"relay-vectors-v1/junk").digest()[:60]
    junk_bundle = sign_header(garbage.header(junk), GATEWAY.keys, junk)
    return [
        Vector(
            "decrypt-failed-other-recipient-key",
            Recipe("decrypt-failed-other-recipient-key", box_to=OTHER_AGENT).build(),
            "decrypt_failed",
            "decrypt",
            "header addressed to plant7, payload sealed to plant8's key",
        ),
        Vector(
            "decrypt-failed-other-sender-box",
            Recipe("decrypt-failed-other-sender-box", boxer=ROGUE).build(),
            "decrypt_failed",
            "decrypt",
            "payload sealed with another sender's box key",
        ),
        Vector(
            "decrypt-failed-garbage",
            junk_bundle,
            "decrypt_failed",
            "decrypt",
            "60 bytes that are not a box, correctly hashed and signed",
        ),
    ]


def _payload_vectors() -> list[Vector]:
    cap = LIMITS["max_secret_bytes"]
    over = crypto.b64(b"x" * (cap + 1))
    at_cap = crypto.b64(b"x" * cap)

    def doc(**changes: Any) -> bytes:
        body: dict[str, Any] = {"v": 1, "state": "full", "secrets": [["a", 1, "YQ==", None]]}
        body.update(changes)
        return json.dumps(body, separators=(",", ":")).encode()

    many = [[f"s{i}", 1, "YQ==", None] for i in range(LIMITS["max_entries"] + 1)]
    cases: list[tuple[str, bytes, str]] = [
        ("not-json", b"\x00not json", "decrypts to bytes that are not JSON"),
        ("not-full-state", doc(state="delta"), "state delta in a bundle without a base"),
        ("bad-version", doc(v=2), "payload v is 2"),
        (
            "duplicate-path",
            doc(secrets=[["a", 1, "YQ==", None], ["a", 2, "Yg==", None]]),
            "a path twice in secrets",
        ),
        ("live-and-dead", doc(tombstones=[["a", 2]]), "a path both live and tombstoned"),
        ("bad-path", doc(secrets=[["../x", 1, "YQ==", None]]), "path ../x"),
        (
            "value-over-cap",
            doc(secrets=[["a", 1, over, None]]),
            f"value of {cap + 1} bytes, max_secret_bytes = {cap} (a {cap}-byte value is fine)",
        ),
        ("bad-base64", doc(secrets=[["a", 1, "YQ", None]]), "value is unpadded base64"),
        ("bad-row", doc(secrets=[["a", 1, "YQ=="]]), "a secret row of 3 items"),
        (
            "too-many-entries",
            doc(secrets=many),
            f"{LIMITS['max_entries'] + 1} entries, max_entries = {LIMITS['max_entries']}",
        ),
        ("duplicate-member", doc()[:-1] + b',"v":1}', "member v twice"),
        (
            "versions-pending-not-newer",
            doc(versions=[["a", "pending", 1, "Yg==", None, NOW, None]]),
            "a pending version that is not newer than the current one (§8.1)",
        ),
        (
            "versions-previous-alone",
            doc(versions=[["b", "previous", 1, "Yg==", None, NOW, None]]),
            "a previous version of a path with no current version (§8.1)",
        ),
        (
            "versions-bad-row",
            doc(versions=[["a", "pending", 2, "Yg==", None, NOW]]),
            "a version row of 6 items (§8.1)",
        ),
    ]
    vectors = [
        Vector(
            f"malformed-payload-{name}",
            Recipe(f"malformed-payload-{name}", plaintext=data).build(),
            "malformed",
            "payload",
            note,
        )
        for name, data, note in cases
    ]
    ok = SecretsPayload([("a", 1, at_cap, None)])
    vectors.append(
        Vector(
            "ok-value-at-cap",
            Recipe("ok-value-at-cap", seq=11, plaintext=ok.encode()).build(),
            "ok",
            None,
            f"a value of exactly max_secret_bytes = {cap}",
            ok,
        )
    )
    versions = SecretsPayload(
        [("db/plant7/password", 3, "Y3VycmVudA==", None)],
        versions=[
            ("db/plant7/password", "previous", 2, "cHJldmlvdXM=", None, NOW + 3600, None),
            ("db/plant7/password", "pending", 4, "cGVuZGluZw==", None, NOW + 60, 3600),
            ("db/plant7/staged", "pending", 1, "Zmlyc3Q=", NOW + 86400, NOW + 120, None),
        ],
    )
    vectors.append(
        Vector(
            "ok-versions",
            Recipe("ok-versions", seq=12, plaintext=versions.encode()).build(),
            "ok",
            None,
            "previous and pending versions (§8.1); an older agent ignores them",
            versions,
        )
    )
    return vectors


def build_vectors() -> tuple[list[Vector], dict[str, Any]]:
    """Every vector and the trust context they are judged in."""
    stream, latest, old = _stream_vectors()
    vectors = (
        _ok_vectors()
        + _envelope_vectors()
        + _authentication_vectors()
        + _judgement_vectors()
        + stream
        + _delta_vectors(latest, old)
        + _decrypt_vectors()
        + _payload_vectors()
    )
    latest_id = parse_envelope(latest).bundle_id
    context = {
        "format": "relay bundle v1 conformance vectors",
        "now": NOW,
        "limits": LIMITS,
        "kinds": ["secrets"],
        "verifier": AGENT.label,
        "trusted_senders": [GATEWAY.label],
        "parties": {label: p.to_json(note) for label, (p, note) in PARTIES.items()},
        "stream": {
            "high_water": {"seq": HIGH_WATER_SEQ, "bundle_id": latest_id},
            "applied": sorted([latest_id, parse_envelope(old).bundle_id]),
            "applied_seq": {latest_id: HIGH_WATER_SEQ, parse_envelope(old).bundle_id: 3},
        },
        "signing_context_hex": SIGNING_CONTEXT.hex(),
        "example_signed_prefix_hex": signed_prefix(parse_envelope(latest).header).hex(),
    }
    return vectors, context


def write_vectors(out: Path) -> None:
    """Write every vector, ``manifest.json`` and ``keys.json`` into ``out``."""
    vectors, context = build_vectors()
    names = [v.name for v in vectors]
    if len(set(names)) != len(names):
        raise RuntimeError("two vectors share a name")
    out.mkdir(parents=True, exist_ok=True)
    for vector in vectors:
        (out / f"{vector.name}.bundle").write_bytes(vector.data)
    manifest = {v.name: v.manifest_entry() for v in vectors}
    (out / "manifest.json").write_text(_pretty(manifest), encoding="utf-8")
    (out / "keys.json").write_text(_pretty(context), encoding="utf-8")
    from audit_vectors import write_audit_vectors  # the audit payload (§9), same parties

    write_audit_vectors(out / "audit", _pretty)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    write_vectors(args.out or Path(__file__).parent / "vectors")
    if args.out is None:  # the certificate-chain vectors (spec §15) live next to these
        from make_trust_vectors import main as write_trust_vectors

        write_trust_vectors()


if __name__ == "__main__":
    main()
