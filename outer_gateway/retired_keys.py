"""Retired online keys the gateway still opens the return stream with, for a bounded window.

After ``relay gateway key rotate`` an agent keeps sealing its audit bundles to the old online
key until it applies a bundle certified for the new one. So that those bundles are not refused
as ``wrong_recipient`` (resent later: nothing lost, but noise), the rotation keeps the old key
pair as ``identity.retired.KEY_ID.key`` (protected as ``identity.key`` is) and the return stream
is opened with it for ``keys.retired_open_for`` after its retirement (``KeyRecord.retired_at``
in ``trust.json``). After that window, and as soon as the key is revoked, the file is deleted
and such bundles are ``wrong_recipient`` again. The retired key never signs anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from outer_gateway.keyring import Keyring
from relay import crypto
from relay.durations import parse_duration
from relay.home import Home
from relay.identity import PublicIdentity, identity_of

SIGNING_ROLE = "signing"


@dataclass(frozen=True)
class RetiredKey:
    """A retired online key pair still opened until ``until``."""

    identity: PublicIdentity
    keys: crypto.KeyPair
    until: int


def label(key_id: str) -> str:
    """The side-key label of a retired key (``identity.LABEL.key`` in the home)."""
    return f"retired.{key_id}"


def keep(home: Home, keys: crypto.KeyPair) -> None:
    """Keep ``keys`` (the online key being replaced) for the window; before the switch."""
    home.write_side_key(label(crypto.key_id(keys.sign_public, keys.box_public)), keys)


def forget(home: Home, key_id: str) -> None:
    """Delete a retired key (revoked, or its window over)."""
    home.remove_side_key(label(key_id))


def window(home: Home) -> int:
    """``keys.retired_open_for`` in seconds."""
    return parse_duration(str(home.config.get("keys.retired_open_for")))


def open_keys(home: Home, ring: Keyring | None, now: int) -> dict[str, RetiredKey]:
    """The retired keys still within their window (key id ->); deletes those past it."""
    if ring is None:
        return {}
    found = {}
    for record in ring.keys:
        if record.role == SIGNING_ROLE and record.state != "active":
            key = open_key(home, ring, record.key_id, now)
            if key is not None:
                found[record.key_id] = key
    return found


def open_key(home: Home, ring: Keyring | None, key_id: str, now: int) -> RetiredKey | None:
    """Retired key ``key_id`` if it is still opened at ``now`` (its file unlocked only then);
    a key past its window or revoked has its file deleted. ``None`` otherwise."""
    until = None if ring is None else _open_until(home, ring, key_id)
    if ring is None or until is None:
        return None
    if now > until:
        forget(home, key_id)
        return None
    pair = home.read_side_key(label(key_id))
    if pair is None or crypto.key_id(pair.sign_public, pair.box_public) != key_id:
        return None
    return RetiredKey(identity_of("gateway", ring.gateway, pair), pair, until)


def is_open(home: Home, ring: Keyring | None, key_id: str, now: int) -> bool:
    """Whether bundles sealed to ``key_id`` are still opened (no key file is unlocked)."""
    until = _open_until(home, ring, key_id)
    return until is not None and now <= until and home.has_side_key(label(key_id))


def _open_until(home: Home, ring: Keyring | None, key_id: str) -> int | None:
    """End of the window of a retired (not revoked) signing key of the keyring, else None."""
    if ring is None:
        return None
    for record in ring.keys:
        if record.key_id != key_id or record.role != SIGNING_ROLE:
            continue
        if record.state == "revoked":
            forget(home, key_id)
            return None
        if record.state == "retired" and record.retired_at is not None:
            return record.retired_at + window(home)
    return None
