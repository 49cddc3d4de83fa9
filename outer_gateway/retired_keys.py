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
    found: dict[str, RetiredKey] = {}
    span = window(home)
    for record in ring.keys:
        if record.role != SIGNING_ROLE or record.state == "active":
            continue
        pair = home.read_side_key(label(record.key_id))
        if pair is None:
            continue
        until = (record.retired_at or 0) + span
        if record.state == "revoked" or record.retired_at is None or now > until:
            forget(home, record.key_id)
            continue
        found[record.key_id] = RetiredKey(identity_of("gateway", ring.gateway, pair), pair, until)
    return found
