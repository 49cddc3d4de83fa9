"""Judging a bundle's certificate chain: pinned root state + trust section + ``now`` in, the
authorised online key (and what to remember) or a reason code out.

Pure: no clock, no store, no files. The caller (the importer) persists what :class:`ChainResult`
says to remember (new roots, revocations, the newest certificate) and uses
:attr:`ChainResult.signer` as the bundle's sender.

The walk follows TUF's root rotation: roots up to the trusted version are ignored; each newer
root must be exactly one version on, signed by the root before it and by itself, with a key never
trusted before. The certificate must then be signed by the newest root, for this gateway, for the
``signing`` role, for the key that signed the bundle, not revoked, and valid at ``now`` give or
take ``skew`` seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from relay import crypto
from relay.codes import BAD_IDENTITY
from relay.errors import (
    CERT_EXPIRED,
    CERT_INVALID,
    CERT_NOT_YET_VALID,
    KEY_REVOKED,
    ROOT_CHAIN_BROKEN,
    ROOT_ROLLBACK,
    BundleRejected,
)
from relay.identity import PublicIdentity
from relay.trust.documents import SIGNING_ROLE, Cert, Revocation, Root, TrustSection


@dataclass(frozen=True)
class RootState:
    """What an agent trusts of its gateway: the newest root it accepted, every root key it ever
    accepted (a key never comes back: no loops), and the revocations it holds."""

    gateway: str
    version: int
    key: bytes
    known_keys: frozenset[bytes]
    revoked: Mapping[str, int] = field(default_factory=dict)  # key id -> highest revoked serial
    anchor: str = ""  # the stream name of this gateway at this agent (stable across rotations)


@dataclass(frozen=True)
class ChainResult:
    """A certificate chain that holds."""

    signer: PublicIdentity
    cert: Cert
    new_roots: tuple[Root, ...]
    revoked: Mapping[str, int]  # the merged revocations (state + bundle)
    root_version: int
    anchor: str  # the stream name (RootState.anchor)


def verify_chain(
    section: TrustSection, state: RootState, sender: str, sender_key: str, now: int, skew: int
) -> ChainResult:
    """Walk the roots, check the certificate and revocations; :class:`BundleRejected` if not."""
    version, key, new_roots = walk_roots(section.roots, state)
    cert = section.cert
    check_cert(cert, state.gateway, version, key)
    if cert.gateway != sender or cert.key_id != sender_key:
        raise _reject(CERT_INVALID, "the certificate is not for the key that signed the bundle")
    revoked = merge_revocations(section.revocations, state, version, key)
    if revoked.get(cert.key_id, 0) >= cert.serial:
        raise _reject(KEY_REVOKED, f"key {cert.key_id} is revoked")
    check_validity(cert, now, skew)
    signer = PublicIdentity("gateway", cert.gateway, cert.sign_public, cert.box_public)
    return ChainResult(signer, cert, new_roots, revoked, version, state.anchor)


def walk_roots(roots: tuple[Root, ...], state: RootState) -> tuple[int, bytes, tuple[Root, ...]]:
    """The newest root reached from ``state`` one step at a time, and the roots it added."""
    version, key = state.version, state.key
    seen = set(state.known_keys) | {key}
    added: list[Root] = []
    for root in roots:
        if root.version <= state.version:
            continue  # already trusted (or older): nothing to learn
        if root.gateway != state.gateway:
            raise _reject(ROOT_CHAIN_BROKEN, "a root of another gateway in the chain")
        if root.version != version + 1:
            raise _reject(
                ROOT_CHAIN_BROKEN, f"root version {root.version} follows {version}: a gap"
            )
        if not _signed(key, root.message(), root.prev_sig):
            raise _reject(ROOT_CHAIN_BROKEN, f"root {root.version} is not signed by root {version}")
        if not _signed(root.key, root.message(), root.self_sig):
            raise _reject(ROOT_CHAIN_BROKEN, f"root {root.version} is not signed by itself")
        if root.key in seen:
            raise _reject(ROOT_CHAIN_BROKEN, f"root {root.version} reuses an earlier root key")
        seen.add(root.key)
        version, key = root.version, root.key
        added.append(root)
    return version, key, tuple(added)


def check_cert(cert: Cert, gateway: str, version: int, key: bytes) -> None:
    """The certificate is by the newest trusted root, for this gateway and the signing role."""
    if cert.root_version < version:
        raise _reject(
            ROOT_ROLLBACK,
            f"certified by root {cert.root_version}, older than the trusted root {version}",
        )
    if cert.root_version > version:
        raise _reject(ROOT_CHAIN_BROKEN, f"certified by root {cert.root_version}, not reached")
    if not _signed(key, cert.message(), cert.sig):
        raise _reject(CERT_INVALID, "the certificate is not signed by the trusted root")
    if cert.gateway != gateway:
        raise _reject(CERT_INVALID, f"the certificate is for gateway {cert.gateway}")
    if cert.role != SIGNING_ROLE:
        raise _reject(CERT_INVALID, f"the certificate is for the role {cert.role}, not signing")


def merge_revocations(
    revocations: tuple[Revocation, ...], state: RootState, version: int, key: bytes
) -> dict[str, int]:
    """The state's revocations with the bundle's (each signed by the newest trusted root)."""
    merged = dict(state.revoked)
    for rev in revocations:
        if rev.gateway != state.gateway or rev.root_version != version:
            raise _reject(CERT_INVALID, "a revocation from another gateway or root")
        if not _signed(key, rev.message(), rev.sig):
            raise _reject(CERT_INVALID, "a revocation not signed by the trusted root")
        merged[rev.key_id] = max(merged.get(rev.key_id, 0), rev.serial)
    return merged


def check_validity(cert: Cert, now: int, skew: int) -> None:
    """``not_before - skew <= now <= not_after + skew``."""
    if now + skew < cert.not_before:
        raise _reject(CERT_NOT_YET_VALID, f"the certificate is valid from {cert.not_before}")
    if now - skew > cert.not_after:
        raise _reject(CERT_EXPIRED, f"the certificate expired at {cert.not_after}")


def verify_root_document(root: Root, gateway: str | None = None) -> None:
    """A root as pinned at enrollment: self-signed (``root_chain_broken`` otherwise)."""
    if not _signed(root.key, root.message(), root.self_sig):
        raise _reject(ROOT_CHAIN_BROKEN, "the root is not signed by itself")
    if gateway is not None and root.gateway != gateway:
        raise _reject(ROOT_CHAIN_BROKEN, f"the root is for gateway {root.gateway}")


def _signed(key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        crypto.verify(key, message, signature)
    except crypto.CryptoFailure:
        return False
    return True


def _reject(code: str, message: str) -> BundleRejected:
    return BundleRejected(message, code=code)


def parse_root_identity(data: bytes) -> tuple[Root, Cert, PublicIdentity]:
    """A gateway's root identity file (``relay gateway identity`` with a root): the root it pins,
    the current certificate and the online identity it certifies; ``bad_identity`` otherwise."""
    import json

    from relay.errors import UsageError
    from relay.trust.documents import parse_cert, parse_root

    try:
        doc = json.loads(data.decode("utf-8"))
        if not isinstance(doc, dict) or set(doc) != {"relay_gateway_root", "root", "cert"}:
            raise ValueError
        root, cert = parse_root(doc["root"]), parse_cert(doc["cert"])
        verify_root_document(root)
        check_cert(cert, root.gateway, root.version, root.key)
    except (ValueError, UnicodeDecodeError, BundleRejected):
        raise UsageError("not a valid gateway root identity file", code=BAD_IDENTITY) from None
    return root, cert, PublicIdentity("gateway", cert.gateway, cert.sign_public, cert.box_public)
