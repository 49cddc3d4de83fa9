"""The bundle envelope: encode and parse, without judging trust.

Layout (all integers big-endian)::

    offset      size  field
    0           8     magic  b"RELAYBv1"
    8           4     H: header length, 2 <= H <= MAX_HEADER_BYTES
    12          H     header: canonical JSON object (see HEADER_FIELDS)
    12+H        64    Ed25519 signature over SIGNING_CONTEXT || bytes[0 : 12+H]
    76+H        P     payload: 24-byte nonce || NaCl box ciphertext, P = header["payload_len"]

The file is exactly ``76 + H + P`` bytes. The header binds the payload by length and SHA-256.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

from relay import crypto
from relay.canonical import canonical_json, parse_canonical
from relay.errors import MALFORMED, BundleRejected

MAGIC = b"RELAYBv1"
VERSION = 1
SIGNING_CONTEXT = b"relay-bundle-v1\x00"
MAX_HEADER_BYTES = 64 * 1024
PREFIX_BYTES = len(MAGIC) + 4
KINDS = ("secrets", "audit")
SENDER_ROLE = {"secrets": "gateway", "audit": "agent"}  # who may send each kind

# Used with fullmatch: "$" would also match before a trailing newline ("plant7\n").
_HEX16 = re.compile(r"[0-9a-f]{16}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
MAX_INT = 2**53 - 1  # exact in every JSON implementation

HEADER_FIELDS: dict[str, Any] = {
    "v": int,
    "kind": str,
    "sender": str,
    "sender_key": str,
    "recipient": str,
    "recipient_key": str,
    "seq": int,
    "created": int,
    "expires": int,
    "payload_len": int,
    "payload_sha256": str,
}
# Optional members: the sender's certificate chain (spec §15), an object; the base of a delta
# bundle (spec §8.3), ``{"id": HEX64, "seq": N}``.
TRUST_FIELD = "trust"
BASE_FIELD = "base"
OPTIONAL_FIELDS = frozenset({TRUST_FIELD, BASE_FIELD})


@dataclass(frozen=True)
class BundleBase:
    """The bundle a delta applies on top of: its id (SHA-256 of its signed prefix) and seq."""

    id: str
    seq: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "seq": self.seq}


@dataclass(frozen=True)
class Header:
    """The signed header of a bundle."""

    kind: str
    sender: str
    sender_key: str
    recipient: str
    recipient_key: str
    seq: int
    created: int
    expires: int
    payload_len: int
    payload_sha256: str
    v: int = VERSION
    trust: dict[str, Any] | None = None  # spec §15: checked by relay.trust, not here
    base: BundleBase | None = None  # spec §8.3: a delta's base; None for a full-state bundle

    def to_json(self) -> dict[str, Any]:
        doc = {name: getattr(self, name) for name in HEADER_FIELDS}
        if self.trust is not None:
            doc[TRUST_FIELD] = self.trust
        if self.base is not None:
            doc[BASE_FIELD] = self.base.to_json()
        return doc


@dataclass(frozen=True)
class Envelope:
    """A parsed, not yet verified, bundle."""

    header: Header
    signed: bytes  # magic, length and header bytes: what the signature covers (with context)
    signature: bytes
    payload: bytes

    @property
    def bundle_id(self) -> str:
        """SHA-256 of the signed bytes: names this exact signed bundle (hex)."""
        return crypto.sha256(self.signed).hex()


def encode_envelope(header: Header, signature: bytes, payload: bytes) -> bytes:
    """The bundle bytes for an already signed header."""
    return signed_prefix(header) + signature + payload


def signed_prefix(header: Header) -> bytes:
    """Magic, header length and canonical header: the bytes the signature covers."""
    body = canonical_json(header.to_json())
    if len(body) > MAX_HEADER_BYTES:
        raise ValueError("header too large")
    return MAGIC + struct.pack(">I", len(body)) + body


def parse_envelope(data: bytes) -> Envelope:
    """Split ``data`` into its parts and check the header's syntax; ``malformed`` otherwise."""
    if len(data) < PREFIX_BYTES:
        raise _malformed("shorter than the fixed prefix (empty or truncated)")
    if data[: len(MAGIC)] != MAGIC:
        raise _malformed("not a relay bundle v1 (bad magic)")
    header_end = PREFIX_BYTES + _header_length(data)
    if len(data) < header_end + crypto.SIGNATURE_BYTES:
        raise _malformed("truncated in the header or signature")
    header = parse_header(data[PREFIX_BYTES:header_end])
    expected = header_end + crypto.SIGNATURE_BYTES + header.payload_len
    if len(data) != expected:
        raise _malformed(f"file is {len(data)} bytes, header declares {expected} (truncated?)")
    return Envelope(
        header=header,
        signed=data[:header_end],
        signature=data[header_end : header_end + crypto.SIGNATURE_BYTES],
        payload=data[header_end + crypto.SIGNATURE_BYTES :],
    )


HEAD_BYTES_MAX = PREFIX_BYTES + MAX_HEADER_BYTES + crypto.SIGNATURE_BYTES


@dataclass(frozen=True)
class SignedHead:
    """The first part of a bundle: its header and the signature over it, payload not read.

    The signature covers ``signed`` (magic, length and header), and the header binds the payload
    by its length and SHA-256: a verified head therefore names exactly one bundle.
    """

    header: Header
    signed: bytes
    signature: bytes

    @property
    def bundle_id(self) -> str:
        """SHA-256 of the signed bytes: the same id as the whole bundle's (hex)."""
        return crypto.sha256(self.signed).hex()


def declared_length(prefix: bytes) -> int | None:
    """The total file length the bundle starting with ``prefix`` declares, or ``None`` while
    ``prefix`` is too short to tell (a file still being copied).

    Parses with the strict header parser. Never raises anything but :class:`BundleRejected`
    (``malformed``): a caller that only wants a length treats that as "unknown, let the
    verifier judge the whole file".
    """
    try:
        return _declared_length(prefix)
    except BundleRejected:
        raise
    except Exception:  # the contract: nothing but BundleRejected escapes
        raise _malformed("the header cannot be parsed") from None


def _declared_length(prefix: bytes) -> int | None:
    if not MAGIC.startswith(prefix[: len(MAGIC)]):
        raise _malformed("not a relay bundle v1 (bad magic)")
    if len(prefix) < PREFIX_BYTES:
        return None
    header_len = _header_length(prefix)
    header_end = PREFIX_BYTES + header_len
    if len(prefix) < header_end:
        return None
    header = parse_header(prefix[PREFIX_BYTES:header_end])
    return header_end + crypto.SIGNATURE_BYTES + header.payload_len


def parse_head(prefix: bytes) -> SignedHead:
    """The header and signature at the start of ``prefix`` (a whole bundle or its first
    :data:`HEAD_BYTES_MAX` bytes); ``malformed`` when they are not all there or not valid."""
    if len(prefix) < PREFIX_BYTES or prefix[: len(MAGIC)] != MAGIC:
        raise _malformed("not a relay bundle v1 prefix")
    header_end = PREFIX_BYTES + _header_length(prefix)
    if len(prefix) < header_end + crypto.SIGNATURE_BYTES:
        raise _malformed("truncated in the header or signature")
    return SignedHead(
        header=parse_header(prefix[PREFIX_BYTES:header_end]),
        signed=prefix[:header_end],
        signature=prefix[header_end : header_end + crypto.SIGNATURE_BYTES],
    )


def _header_length(prefix: bytes) -> int:
    (header_len,) = struct.unpack(">I", prefix[len(MAGIC) : PREFIX_BYTES])
    if not 2 <= header_len <= MAX_HEADER_BYTES:
        raise _malformed("header length out of range")
    return int(header_len)


def parse_header(body: bytes) -> Header:
    """Parse canonical header JSON strictly: exact field set, types and ranges."""
    try:
        raw = parse_canonical(body)
    except (ValueError, RecursionError):
        raise _malformed("header is not canonical JSON") from None
    if not isinstance(raw, dict) or set(raw) - OPTIONAL_FIELDS != set(HEADER_FIELDS):
        raise _malformed("header fields are not those of v1")
    if TRUST_FIELD in raw and not isinstance(raw[TRUST_FIELD], dict):
        raise _malformed("header field trust is not an object")
    if BASE_FIELD in raw:
        raw[BASE_FIELD] = _parse_base(raw[BASE_FIELD])
    for name, kind in HEADER_FIELDS.items():  # trust is checked by relay.trust.documents
        value = raw[name]
        if type(value) is not kind:  # bool is not an int here
            raise _malformed(f"header field {name} has the wrong type")
        if kind is int and not 0 <= value <= MAX_INT:
            raise _malformed(f"header field {name} is out of range")
    header = Header(**raw)
    _check_header_values(header)
    return header


def _parse_base(value: Any) -> BundleBase:
    """A delta's base: exactly ``{"id": HEX64, "seq": N}`` with ``1 <= N <= MAX_INT``."""
    if not isinstance(value, dict) or set(value) != {"id", "seq"}:
        raise _malformed("header field base is not {id, seq}")
    bundle_id, seq = value["id"], value["seq"]
    if not (isinstance(bundle_id, str) and _HEX64.fullmatch(bundle_id)):
        raise _malformed("header field base has a bad id")
    if type(seq) is not int or not 1 <= seq <= MAX_INT:
        raise _malformed("header field base has a bad seq")
    return BundleBase(bundle_id, seq)


def _check_header_values(h: Header) -> None:
    if h.v != VERSION:
        raise _malformed(f"unsupported version {h.v}")
    if h.kind not in KINDS:
        raise _malformed(f"unknown kind {h.kind!r}")
    if not (_NAME.fullmatch(h.sender) and _NAME.fullmatch(h.recipient)):
        raise _malformed("bad sender or recipient name")
    if not (_HEX16.fullmatch(h.sender_key) and _HEX16.fullmatch(h.recipient_key)):
        raise _malformed("bad key id")
    if not _HEX64.fullmatch(h.payload_sha256):
        raise _malformed("bad payload hash")
    if h.seq < 1 or h.expires < h.created:
        raise _malformed("bad seq or validity window")
    if h.base is not None and (h.kind != "secrets" or h.base.seq >= h.seq):
        raise _malformed("a base on a bundle that is not a later secrets bundle")
    if h.payload_len < crypto.BOX_NONCE_BYTES + crypto.BOX_OVERHEAD:
        raise _malformed("payload too short to be sealed")


def _malformed(message: str) -> BundleRejected:
    return BundleRejected(message, code=MALFORMED)
