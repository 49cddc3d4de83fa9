"""The signed documents of the two-tier gateway keys (``docs/spec/bundle-v1.md`` §15).

Pure codec, no I/O and no trust decisions (those are in :mod:`relay.trust.chain`):

- :class:`Root`: a gateway root key at a version; version ``n + 1`` is signed by root ``n`` (the
  chain the agents walk) and by itself (proof of possession).
- :class:`Cert`: a root's certificate for an online key pair of the gateway (role ``signing``),
  valid from ``not_before`` to ``not_after``, numbered by ``serial``.
- :class:`Revocation`: a root's statement that every certificate of ``key_id`` with a serial up
  to ``serial`` is revoked (a key certified again later gets a higher serial, so a revocation
  replayed after that does not touch it).
- :class:`TrustSection`: what a bundle header carries under ``trust``.

Each document is signed over its own context string and the canonical JSON of its body; every
byte string is lower-case hex, so a header that carries them stays within the characters of §1.1.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relay import crypto
from relay.canonical import canonical_json
from relay.errors import MALFORMED, BundleRejected
from relay.trust.signer import Signer, as_signer

AnyKey = crypto.KeyPair | Signer

TRUST_VERSION = 1
SIGNING_ROLE = "signing"
ROOT_CONTEXT = b"relay-root-v1\x00"
CERT_CONTEXT = b"relay-cert-v1\x00"
REVOCATION_CONTEXT = b"relay-revocation-v1\x00"
MAX_INT = 2**53 - 1
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_ROLE = re.compile(r"[a-z]{1,16}")
_HEX16 = re.compile(r"[0-9a-f]{16}")


def root_fingerprint(key: bytes) -> str:
    """What operators compare out of band for a root: ``SHA256:`` and unpadded base64."""
    digest = hashlib.sha256(b"relay-root-fingerprint-v1\x00" + key).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def root_key_id(key: bytes) -> str:
    """A short name for a root key (16 hex digits), as key ids are for online keys."""
    return hashlib.sha256(b"relay-root-key-id-v1\x00" + key).hexdigest()[:16]


@dataclass(frozen=True)
class Root:
    """Root key ``key`` of ``gateway`` at ``version`` (1, 2, …)."""

    gateway: str
    version: int
    key: bytes
    prev_sig: bytes  # by root version - 1; empty for version 1
    self_sig: bytes

    def message(self) -> bytes:
        body = {"gateway": self.gateway, "key": self.key.hex(), "version": self.version}
        return ROOT_CONTEXT + canonical_json(body)

    def to_json(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway,
            "key": self.key.hex(),
            "prev_sig": self.prev_sig.hex(),
            "self_sig": self.self_sig.hex(),
            "version": self.version,
        }


@dataclass(frozen=True)
class Cert:
    """A root's certificate for one online key pair of the gateway."""

    gateway: str
    role: str
    serial: int
    sign_public: bytes
    box_public: bytes
    not_before: int
    not_after: int
    root_version: int
    sig: bytes

    @property
    def key_id(self) -> str:
        return crypto.key_id(self.sign_public, self.box_public)

    def message(self) -> bytes:
        body = {k: v for k, v in self.to_json().items() if k != "sig"}
        return CERT_CONTEXT + canonical_json(body)

    def to_json(self) -> dict[str, Any]:
        return {
            "box_public": self.box_public.hex(),
            "gateway": self.gateway,
            "not_after": self.not_after,
            "not_before": self.not_before,
            "role": self.role,
            "root_version": self.root_version,
            "serial": self.serial,
            "sig": self.sig.hex(),
            "sign_public": self.sign_public.hex(),
        }


@dataclass(frozen=True)
class Revocation:
    """Every certificate of ``key_id`` with a serial ``<= serial`` is revoked."""

    gateway: str
    key_id: str
    serial: int
    root_version: int
    sig: bytes

    def message(self) -> bytes:
        body = {k: v for k, v in self.to_json().items() if k != "sig"}
        return REVOCATION_CONTEXT + canonical_json(body)

    def to_json(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway,
            "key_id": self.key_id,
            "root_version": self.root_version,
            "serial": self.serial,
            "sig": self.sig.hex(),
        }


@dataclass(frozen=True)
class TrustSection:
    """The ``trust`` member of a bundle header."""

    roots: tuple[Root, ...]
    cert: Cert
    revocations: tuple[Revocation, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "cert": self.cert.to_json(),
            "revocations": [r.to_json() for r in self.revocations],
            "roots": [r.to_json() for r in self.roots],
            "v": TRUST_VERSION,
        }


# -- signing (gateway side) ------------------------------------------------------------------


def sign_root(gateway: str, version: int, new: AnyKey, prev: AnyKey | None) -> Root:
    """Root ``version`` with key ``new``, signed by ``prev`` (the root it replaces) and itself."""
    signer = as_signer(new)
    unsigned = Root(gateway, version, signer.sign_public, b"", b"")
    message = unsigned.message()
    prev_sig = as_signer(prev).sign(message) if prev is not None else b""
    return Root(gateway, version, signer.sign_public, prev_sig, signer.sign(message))


def sign_cert(root: AnyKey, unsigned: Cert) -> Cert:
    """``unsigned`` with its signature by ``root``."""
    return _replace_sig(unsigned, as_signer(root).sign(unsigned.message()))


def sign_revocation(root: AnyKey, unsigned: Revocation) -> Revocation:
    """``unsigned`` with its signature by ``root``."""
    return Revocation(
        unsigned.gateway,
        unsigned.key_id,
        unsigned.serial,
        unsigned.root_version,
        as_signer(root).sign(unsigned.message()),
    )


def _replace_sig(cert: Cert, sig: bytes) -> Cert:
    return Cert(
        cert.gateway,
        cert.role,
        cert.serial,
        cert.sign_public,
        cert.box_public,
        cert.not_before,
        cert.not_after,
        cert.root_version,
        sig,
    )


# -- parsing (strict: exact members, types and patterns; ``malformed`` otherwise) -------------


def parse_trust_section(raw: object) -> TrustSection:
    """The header's ``trust`` member, checked for syntax only (no signature is verified)."""
    doc = _members(raw, {"v", "roots", "cert", "revocations"})
    if doc["v"] != TRUST_VERSION or type(doc["v"]) is not int:
        raise _malformed("unsupported trust section version")
    if not isinstance(doc["roots"], list) or not isinstance(doc["revocations"], list):
        raise _malformed("trust roots and revocations must be lists")
    return TrustSection(
        tuple(parse_root(r) for r in doc["roots"]),
        parse_cert(doc["cert"]),
        tuple(parse_revocation(r) for r in doc["revocations"]),
    )


def parse_root(raw: object) -> Root:
    """A root document (as carried in a bundle or a root identity file)."""
    doc = _members(raw, {"gateway", "version", "key", "prev_sig", "self_sig"})
    version = _int(doc, "version", minimum=1)
    prev_sig = _hex(doc, "prev_sig", None)
    if len(prev_sig) not in (0, crypto.SIGNATURE_BYTES):
        raise _malformed("bad prev_sig length")
    return Root(
        _name(doc, "gateway"),
        version,
        _hex(doc, "key", crypto.KEY_BYTES),
        prev_sig,
        _hex(doc, "self_sig", crypto.SIGNATURE_BYTES),
    )


def parse_cert(raw: object) -> Cert:
    """A certificate document."""
    doc = _members(
        raw,
        {
            "gateway",
            "role",
            "serial",
            "sign_public",
            "box_public",
            "not_before",
            "not_after",
            "root_version",
            "sig",
        },
    )
    role = doc["role"]
    if not isinstance(role, str) or not _ROLE.fullmatch(role):
        raise _malformed("bad certificate role")
    cert = Cert(
        _name(doc, "gateway"),
        role,
        _int(doc, "serial", minimum=1),
        _hex(doc, "sign_public", crypto.KEY_BYTES),
        _hex(doc, "box_public", crypto.KEY_BYTES),
        _int(doc, "not_before"),
        _int(doc, "not_after"),
        _int(doc, "root_version", minimum=1),
        _hex(doc, "sig", crypto.SIGNATURE_BYTES),
    )
    if cert.not_after < cert.not_before:
        raise _malformed("certificate validity reversed")
    return cert


def parse_revocation(raw: object) -> Revocation:
    """A revocation document."""
    doc = _members(raw, {"gateway", "key_id", "serial", "root_version", "sig"})
    key_id = doc["key_id"]
    if not isinstance(key_id, str) or not _HEX16.fullmatch(key_id):
        raise _malformed("bad revoked key id")
    return Revocation(
        _name(doc, "gateway"),
        key_id,
        _int(doc, "serial", minimum=1),
        _int(doc, "root_version", minimum=1),
        _hex(doc, "sig", crypto.SIGNATURE_BYTES),
    )


def _members(raw: object, names: set[str]) -> Mapping[str, Any]:
    if not isinstance(raw, dict) or set(raw) != names:
        raise _malformed("trust document members are not those of v1")
    return raw


def _int(doc: Mapping[str, Any], name: str, minimum: int = 0) -> int:
    value = doc[name]
    if type(value) is not int or not minimum <= value <= MAX_INT:
        raise _malformed(f"bad {name}")
    return value


def _hex(doc: Mapping[str, Any], name: str, length: int | None) -> bytes:
    value = doc[name]
    if not isinstance(value, str) or not re.fullmatch(r"(?:[0-9a-f]{2})*", value):
        raise _malformed(f"bad {name}")
    data = bytes.fromhex(value)
    if length is not None and len(data) != length:
        raise _malformed(f"bad {name} length")
    return data


def _name(doc: Mapping[str, Any], name: str) -> str:
    value = doc[name]
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise _malformed(f"bad {name}")
    return value


def _malformed(message: str) -> BundleRejected:
    return BundleRejected(message, code=MALFORMED)
