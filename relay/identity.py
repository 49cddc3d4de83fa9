"""Identities: who a gateway or an agent is, as its public keys, and the files that carry them.

A public identity file (``relay gateway identity``) and an enrollment request
(``relay agent init --request-out``) are the same self-signed JSON document::

    {"relay_identity": 1, "role": "agent", "name": "plant7",
     "sign_public": "<b64>", "box_public": "<b64>", "signature": "<b64>"}

The signature (Ed25519, by the identity's own key, over ``relay-identity-v1\0`` and the canonical
JSON of the other fields)
proves possession of the key and catches corruption; the **fingerprint** printed on both sides is
what operators compare out of band to establish trust, as with SSH host keys.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from relay import crypto
from relay.canonical import canonical_json
from relay.codes import BAD_IDENTITY, BAD_NAME
from relay.errors import UsageError
from relay.frozen import frozen

ROLES = ("gateway", "agent", "hop")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
MAX_IDENTITY_FILE = 16 * 1024
# Domain separation: an identity signature can never be mistaken for a bundle signature.
IDENTITY_CONTEXT = b"relay-identity-v1\x00"


def check_name(name: str) -> str:
    """``name`` if it is a valid identity name (lower case, digits, ``.``, ``_``, ``-``)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise UsageError(
            f"invalid name {name!r}: use 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter "
            "or digit",
            code=BAD_NAME,
        )
    return name


@frozen
class PublicIdentity:
    """The public half of an identity."""

    role: str
    name: str
    sign_public: bytes
    box_public: bytes

    @property
    def key_id(self) -> str:
        return crypto.key_id(self.sign_public, self.box_public)

    @property
    def fingerprint(self) -> str:
        return crypto.fingerprint(self.sign_public, self.box_public)

    def _unsigned(self) -> dict[str, object]:
        return {
            "relay_identity": 1,
            "role": self.role,
            "name": self.name,
            "sign_public": crypto.b64(self.sign_public),
            "box_public": crypto.b64(self.box_public),
        }

    def to_document(self, keys: crypto.KeyPair) -> bytes:
        """The self-signed identity document, signed with ``keys`` (which must match)."""
        if keys.sign_public != self.sign_public:
            raise ValueError("keys do not belong to this identity")
        body = self._unsigned()
        body["signature"] = crypto.b64(crypto.sign(keys, IDENTITY_CONTEXT + canonical_json(body)))
        return json.dumps(body, indent=2, sort_keys=True).encode("ascii") + b"\n"


def identity_of(role: str, name: str, keys: crypto.KeyPair) -> PublicIdentity:
    """The public identity for a key pair."""
    return PublicIdentity(role, name, keys.sign_public, keys.box_public)


def parse_identity_document(data: bytes, expect_role: str) -> PublicIdentity:
    """Parse and self-verify an identity document; ``bad_identity`` if it is not valid."""
    try:
        body = json.loads(data.decode("utf-8"))
        if not isinstance(body, dict) or body.get("relay_identity") != 1:
            raise ValueError("not a relay identity document")
        if set(body) != {
            "relay_identity",
            "role",
            "name",
            "sign_public",
            "box_public",
            "signature",
        }:
            raise ValueError("unexpected fields")
        signature = crypto.unb64(body.pop("signature"), crypto.SIGNATURE_BYTES)
        if not isinstance(body["role"], str) or not isinstance(body["name"], str):
            raise TypeError("role and name must be strings")
        ident = PublicIdentity(
            role=body["role"],
            name=check_name(body["name"]),
            sign_public=crypto.unb64(body["sign_public"], crypto.KEY_BYTES),
            box_public=crypto.unb64(body["box_public"], crypto.KEY_BYTES),
        )
        crypto.verify(ident.sign_public, IDENTITY_CONTEXT + canonical_json(body), signature)
    except (ValueError, KeyError, TypeError, AttributeError, crypto.CryptoFailure, UsageError):
        raise UsageError(
            "not a valid, self-signed relay identity file", code=BAD_IDENTITY
        ) from None
    if ident.role != expect_role:
        raise UsageError(
            f"this is the identity of a {ident.role}, expected a {expect_role}", code=BAD_IDENTITY
        )
    return ident


def read_identity_file(path: Path, expect_role: str) -> PublicIdentity:
    """Read an identity document from ``path`` (small, regular file)."""
    from relay.transport.folder import read_capped

    try:
        data = read_capped(path, MAX_IDENTITY_FILE)
    except Exception:
        raise UsageError(f"cannot read identity file {path}", code=BAD_IDENTITY) from None
    return parse_identity_document(data, expect_role)
