"""The gateway's two-tier keys (spec §15): roots, the certificate of the online key, revocations.

Public material only, in ``HOME/trust.json`` (the root's private key stays in its own offline
file, :mod:`relay.trust.root_file`; the online key in ``HOME/identity.key``). Every operation
that signs takes an unlocked :class:`~relay.trust.root_file.RootKey` and checks that it is the
newest root before changing anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay import crashpoint, crypto
from relay.codes import (
    ALREADY_INITIALIZED,
    BAD_TRUST_FILE,
    CERT_INVALID,
    KEY_ACTIVE,
    ROOT_REUSED,
    UNKNOWN_KEY,
    WRONG_ROOT,
)
from relay.errors import CERT_EXPIRED, KEY_REVOKED, BundleRejected, UsageError
from relay.home import Home
from relay.trust.documents import (
    SIGNING_ROLE,
    Cert,
    Revocation,
    Root,
    TrustSection,
    parse_cert,
    parse_revocation,
    parse_root,
    root_key_id,
    sign_cert,
    sign_revocation,
    sign_root,
)
from relay.trust.pkcs11_root import TokenKey
from relay.trust.root_file import RootKey

TRUST_FILE = "trust.json"


@dataclass
class KeyRecord:
    """One key the gateway has had: id, role (``root`` or ``signing``), state and validity."""

    key_id: str
    role: str
    state: str  # active | retired | revoked
    not_before: int | None = None
    not_after: int | None = None
    serial: int | None = None
    version: int | None = None
    retired_at: int | None = None  # a signing key: when a rotation replaced it

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Keyring:
    """The gateway's trust state."""

    gateway: str
    roots: list[Root]
    serial: int
    cert: Cert
    revocations: list[Revocation] = field(default_factory=list)
    keys: list[KeyRecord] = field(default_factory=list)

    @property
    def root(self) -> Root:
        return self.roots[-1]

    def section(self, now: int) -> dict[str, Any]:
        """The header's ``trust`` member for a bundle made at ``now``."""
        if now > self.cert.not_after:
            raise UsageError(
                "the signing key's certificate has expired: run `relay gateway key rotate`",
                code=CERT_EXPIRED,
            )
        return TrustSection(tuple(self.roots[1:]), self.cert, tuple(self.revocations)).to_json()

    def root_document(self) -> bytes:
        """What agents pin: the newest root and the current certificate."""
        doc = {"relay_gateway_root": 1, "root": self.root.to_json(), "cert": self.cert.to_json()}
        return json.dumps(doc, indent=2, sort_keys=True).encode("ascii") + b"\n"


def load(home: Home) -> Keyring | None:
    """The keyring of ``home``, or ``None`` for a gateway without a root (single key)."""
    path = home.path / TRUST_FILE
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="ascii"))
        return Keyring(
            doc["gateway"],
            [parse_root(r) for r in doc["roots"]],
            int(doc["serial"]),
            parse_cert(doc["cert"]),
            [parse_revocation(r) for r in doc["revocations"]],
            [KeyRecord(**k) for k in doc["keys"]],
        )
    except (OSError, ValueError, KeyError, TypeError, BundleRejected):
        raise UsageError(f"{path} is damaged", code=BAD_TRUST_FILE) from None


def save(home: Home, ring: Keyring) -> None:
    from relay.transport.folder import write_atomic

    doc = {
        "relay_gateway_trust": 1,
        "gateway": ring.gateway,
        "roots": [r.to_json() for r in ring.roots],
        "serial": ring.serial,
        "cert": ring.cert.to_json(),
        "revocations": [r.to_json() for r in ring.revocations],
        "keys": [k.to_json() for k in ring.keys],
    }
    write_atomic(home.path, TRUST_FILE, json.dumps(doc, indent=2).encode("ascii") + b"\n")


def create(home: Home, root: RootKey, now: int, valid_for: int) -> Keyring:
    """Make ``root`` (version 1) this gateway's root and certify the current online key."""
    if load(home) is not None:
        raise UsageError("this gateway already has a root", code=ALREADY_INITIALIZED)
    first = sign_root(home.identity.name, 1, root.keys, None)
    ring = Keyring(home.identity.name, [first], 0, _placeholder_cert())
    ring.keys.append(KeyRecord(root_key_id(first.key), "root", "active", version=1))
    _certify(ring, root, home.identity.sign_public, home.identity.box_public, now, valid_for)
    save(home, ring)
    return ring


def rotate_signing(
    home: Home,
    ring: Keyring,
    root: RootKey,
    now: int,
    valid_for: int,
    token: tuple[TokenKey, str] | None = None,
) -> str:
    """A new online key pair, certified by ``root``, replacing the current one; its key id.
    With ``token`` (key reference, PIN) the new pair is made in that PKCS#11 token."""
    from outer_gateway import online_key
    from outer_gateway.retired_keys import keep

    check_root(ring, root)
    in_token = home.path.joinpath(online_key.REF_FILE).exists()
    if token is not None:
        return _rotate_into_token(home, ring, root, now, valid_for, token, in_token)
    new = crypto.generate_keypair()
    _retire_signing(ring, now=now)
    _certify(ring, root, new.sign_public, new.box_public, now, valid_for)
    # Crash-safe order: the new key is on disk before anything certifies it, and identity.key
    # changes last; finish_rotation completes a rotation a crash interrupted. The old key is
    # kept (first) to open return-stream bundles still sealed to it (retired_keys); a key in a
    # token is not (it cannot be copied).
    if not in_token:
        keep(home, home.secrets.keys)
    home.write_side_key("next", new)
    crashpoint.reached("key.next_written")
    save(home, ring)
    crashpoint.reached("key.certified")
    home.replace_keys(new)
    crashpoint.reached("key.swapped")
    online_key.remove_ref(home, online_key.REF_FILE)
    home.remove_side_key("next")
    return ring.cert.key_id


def _rotate_into_token(
    home: Home,
    ring: Keyring,
    root: RootKey,
    now: int,
    valid_for: int,
    token: tuple[TokenKey, str],
    in_token: bool,
) -> str:
    from outer_gateway import online_key
    from outer_gateway.retired_keys import keep
    from relay.trust.pkcs11_online import generate_online

    new = generate_online(*token)  # in the token first: nothing certifies a key that is not
    online_key.write_ref(home, online_key.NEXT_REF_FILE, new)
    if not in_token:
        keep(home, home.secrets.keys)
    _retire_signing(ring, now=now)
    _certify(ring, root, new.sign_public, new.box_public, now, valid_for)
    save(home, ring)
    crashpoint.reached("key.certified")
    online_key.promote_next_ref(home)
    return ring.cert.key_id


def finish_rotation(home: Home, ring: Keyring) -> None:
    """If a rotation stopped after certifying the new key, switch to it now."""
    from outer_gateway import online_key

    if ring.cert.key_id == online_key.online_identity(home).key_id:
        return
    if online_key.ref_key_id(home, online_key.NEXT_REF_FILE) == ring.cert.key_id:
        online_key.promote_next_ref(home)  # into a token
        return
    if ring.cert.key_id == home.identity.key_id:  # back to the file key, the reference left
        online_key.remove_ref(home, online_key.REF_FILE)
        return
    pending = home.read_side_key("next")
    if pending is None or crypto.key_id(pending.sign_public, pending.box_public) != (
        ring.cert.key_id
    ):
        raise UsageError("the signing key has no certificate", code=CERT_INVALID)
    home.replace_keys(pending)
    online_key.remove_ref(home, online_key.REF_FILE)
    home.remove_side_key("next")


def rotate_root(home: Home, ring: Keyring, old: RootKey, new: RootKey, now: int) -> Root:
    """Root version n+1 signed by root n; the online key and revocations signed again by it."""
    check_root(ring, old)
    if new.keys.sign_public in {r.key for r in ring.roots}:
        raise UsageError("the new root key was a root before", code=ROOT_REUSED)
    nxt = sign_root(ring.gateway, ring.root.version + 1, new.keys, old.keys)
    ring.roots.append(nxt)
    for record in ring.keys:
        if record.role == "root" and record.state == "active":
            record.state = "retired"
    ring.keys.append(KeyRecord(root_key_id(nxt.key), "root", "active", version=nxt.version))
    cert = ring.cert
    _retire_signing(ring, keep_record=True)
    _certify(
        ring,
        new,
        cert.sign_public,
        cert.box_public,
        cert.not_before,
        cert.not_after - cert.not_before,
        replace_record=True,
    )
    ring.revocations = [
        sign_revocation(new.keys, Revocation(r.gateway, r.key_id, r.serial, nxt.version, b""))
        for r in ring.revocations
    ]
    crashpoint.reached("root.signed")
    save(home, ring)
    crashpoint.reached("root.saved")
    return nxt


def revoke(home: Home, ring: Keyring, root: RootKey, key_id: str) -> Revocation:
    """A root-signed revocation of every certificate of ``key_id`` issued so far."""
    check_root(ring, root)
    if key_id == ring.cert.key_id:
        raise UsageError(
            "this is the active signing key: run `relay gateway key rotate` first",
            code=KEY_ACTIVE,
        )
    records = [k for k in ring.keys if k.key_id == key_id and k.role == SIGNING_ROLE]
    if not records:
        raise UsageError(f"no signing key {key_id} is known", code=UNKNOWN_KEY)
    ring.serial += 1
    rev = sign_revocation(
        root.keys, Revocation(ring.gateway, key_id, ring.serial, ring.root.version, b"")
    )
    ring.revocations = [r for r in ring.revocations if r.key_id != key_id] + [rev]
    for record in records:
        record.state = "revoked"
    save(home, ring)
    from outer_gateway.retired_keys import forget

    forget(home, key_id)  # a revoked key opens nothing any more
    return rev


def check_not_revoked(ring: Keyring) -> None:
    """Refuse to sign with a revoked key (an operator mistake caught before export)."""
    for rev in ring.revocations:
        if rev.key_id == ring.cert.key_id and rev.serial >= ring.cert.serial:
            raise UsageError("the signing key is revoked", code=KEY_REVOKED)


def check_root(ring: Keyring, root: RootKey) -> None:
    if root.keys.sign_public != ring.root.key:
        raise UsageError(
            f"this is not the current root key (version {ring.root.version})", code=WRONG_ROOT
        )


def _certify(
    ring: Keyring,
    root: RootKey,
    sign_public: bytes,
    box_public: bytes,
    now: int,
    valid_for: int,
    replace_record: bool = False,
) -> None:
    ring.serial += 1
    unsigned = Cert(
        ring.gateway,
        SIGNING_ROLE,
        ring.serial,
        sign_public,
        box_public,
        now,
        now + valid_for,
        ring.root.version,
        b"",
    )
    ring.cert = sign_cert(root.keys, unsigned)
    record = KeyRecord(ring.cert.key_id, SIGNING_ROLE, "active", now, now + valid_for, ring.serial)
    if replace_record:
        ring.keys = [
            k for k in ring.keys if not (k.key_id == record.key_id and k.role == SIGNING_ROLE)
        ]
    ring.keys.append(record)


def _retire_signing(ring: Keyring, keep_record: bool = False, now: int | None = None) -> None:
    if keep_record:
        return
    for record in ring.keys:
        if record.role == SIGNING_ROLE and record.state == "active":
            record.state = "retired"
            record.retired_at = now


def _placeholder_cert() -> Cert:
    return Cert("x", SIGNING_ROLE, 1, bytes(32), bytes(32), 0, 0, 1, bytes(64))


def trust_path(home: Home) -> Path:
    """Where the keyring lives."""
    return home.path / TRUST_FILE
