"""An agent's key rotation (``relay agent key rotate``): the next key, the switch, the old key.

1. :func:`request_rotation` makes a new key pair, keeps it as the **next** key
   (``identity.next.key``) and appends a ``key.rotation_requested`` audit record (signed by the
   current key when the return stream carries it, with the new key's proof of possession).
2. The gateway moves the enrollment to the new key; its next bundle is addressed and sealed to it.
3. :func:`keys_for` lets the importer open a bundle addressed to the next (or previous) key;
   :func:`promote` then makes the next key current and keeps the old one as **previous** until the
   newest bundle sealed to it has expired (bundles sealed to it can no longer be valid after), so
   an old bundle still on a medium is a duplicate, not an alarm.
"""

from __future__ import annotations

from dataclasses import dataclass

from inner_agent.audit import AgentAudit
from inner_agent.store import AgentStore
from relay import crashpoint, crypto
from relay.codes import ROTATION_PENDING
from relay.errors import UsageError
from relay.home import Home
from relay.identity import PublicIdentity, identity_of
from relay.trust.agent_rotation import REQUEST_TYPE, request_fields

PREVIOUS_UNTIL = "previous_key_until"


@dataclass(frozen=True)
class OwnKey:
    """One of this agent's key pairs and the identity it has in bundle headers."""

    label: str  # current | next | previous
    identity: PublicIdentity
    keys: crypto.KeyPair


def request_rotation(home: Home) -> str:
    """Make the next key and queue the request in the return stream; the new key id.

    The key is on disk before the request names it (a request for a key the agent lost would
    cut the site off). A next key whose request a crash kept from being recorded is requested
    now, rather than refused as pending for ever."""
    new = home.read_side_key("next")
    if new is not None and new.sign_public == home.identity.sign_public:
        home.remove_side_key("next")  # a switch a crash interrupted after the swap
        new = None
    if new is not None and _requested(home, new):
        raise UsageError(
            "a key rotation is already pending: export the audit stream and import a bundle",
            code=ROTATION_PENDING,
        )
    if new is None:
        new = crypto.generate_keypair()
        home.write_side_key("next", new)
    crashpoint.reached("agent_key.next_written")
    fields = request_fields(home.identity, new)
    AgentAudit(home).record(REQUEST_TYPE, **fields)
    return fields["new_key_id"]


def _requested(home: Home, new: crypto.KeyPair) -> bool:
    """Whether the audit still holds the request for ``new`` (a request already acknowledged
    and pruned is then requested again: the gateway refuses that one as replayed)."""
    key_id = crypto.key_id(new.sign_public, new.box_public)
    return any(
        r.type == REQUEST_TYPE and r.fields.get("new_key_id") == key_id
        for r in AgentAudit(home).records()
    )


def own_keys(home: Home, store: AgentStore, now: int) -> list[OwnKey]:
    """The key pairs bundles may be addressed to: current, next, and previous while it lasts."""
    keys = [OwnKey("current", home.identity, home.secrets.keys)]
    for label in ("next", "previous"):
        pair = home.read_side_key(label)
        if pair is None:
            continue
        if label == "next" and pair.sign_public == home.identity.sign_public:
            home.remove_side_key("next")  # a switch a crash interrupted after the swap
            continue
        if label == "previous" and now > int(store.get_meta(PREVIOUS_UNTIL) or 0):
            home.remove_side_key("previous")  # bundles sealed to it can no longer be valid
            continue
        keys.append(OwnKey(label, identity_of("agent", home.identity.name, pair), pair))
    return keys


def keys_for(own: list[OwnKey], recipient_key: str) -> OwnKey:
    """The key a bundle addressed to ``recipient_key`` is for (the current key otherwise)."""
    return next((k for k in own if k.identity.key_id == recipient_key), own[0])


def promote(home: Home, store: AgentStore, keep_until: int) -> None:
    """The gateway sealed to the next key: make it current, keep the old one as previous."""
    new = home.read_side_key("next")
    if new is None:
        return
    old = home.secrets.keys
    home.write_side_key("previous", old)  # first: a crash after this leaves both keys on disk
    store.set_meta(PREVIOUS_UNTIL, str(keep_until))
    home.replace_keys(new)
    home.remove_side_key("next")
    AgentAudit(home).record(
        "key.rotated",
        key_id=home.identity.key_id,
        previous=crypto.key_id(old.sign_public, old.box_public),
        previous_until=keep_until,
    )
