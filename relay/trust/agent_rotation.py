"""An agent's request to replace its key pair (pure codec and check).

The request is an audit record ``key.rotation_requested`` in the agent's return stream, so it
travels in a bundle signed by the agent's **current** key; its fields name the current key id,
the new public keys, and a proof of possession (the new key's signature over
``relay-agent-rotation-v1\\x00`` and the canonical JSON of the other fields). The gateway accepts
it only from an enrolled, not revoked agent whose current key id is the one the request replaces,
so a request replayed after the rotation (or after another one) names a key that is no longer
current and is refused.
"""

from __future__ import annotations

from collections.abc import Mapping

from relay import crypto
from relay.canonical import canonical_json
from relay.codes import ROTATION_INVALID, ROTATION_REPLAYED
from relay.errors import AGENT_REVOKED, RelayError
from relay.identity import PublicIdentity

REQUEST_TYPE = "key.rotation_requested"
ROTATION_CONTEXT = b"relay-agent-rotation-v1\x00"
__all__ = ["AGENT_REVOKED", "REQUEST_TYPE", "RotationRefused", "check_request", "request_fields"]


class RotationRefused(RelayError):
    """A key rotation request that is not applied."""

    code = ROTATION_INVALID


def _message(agent: str, old_key_id: str, sign_public: bytes, box_public: bytes) -> bytes:
    body = {
        "agent": agent,
        "new_box_public": box_public.hex(),
        "new_sign_public": sign_public.hex(),
        "old_key_id": old_key_id,
    }
    return ROTATION_CONTEXT + canonical_json(body)


def request_fields(current: PublicIdentity, new: crypto.KeyPair) -> dict[str, str]:
    """The audit record fields of a request to move ``current`` to the key pair ``new``."""
    proof = crypto.sign(
        new, _message(current.name, current.key_id, new.sign_public, new.box_public)
    )
    return {
        "old_key_id": current.key_id,
        "new_key_id": crypto.key_id(new.sign_public, new.box_public),
        "new_sign_public": new.sign_public.hex(),
        "new_box_public": new.box_public.hex(),
        "proof": proof.hex(),
    }


def check_request(fields: Mapping[str, object], current: PublicIdentity) -> PublicIdentity:
    """The agent's new identity if ``fields`` is a valid request to replace ``current``."""
    try:
        old_key_id = str(fields["old_key_id"])
        sign_public = bytes.fromhex(str(fields["new_sign_public"]))
        box_public = bytes.fromhex(str(fields["new_box_public"]))
        proof = bytes.fromhex(str(fields["proof"]))
        crypto.verify(
            sign_public, _message(current.name, old_key_id, sign_public, box_public), proof
        )
    except (KeyError, ValueError, crypto.CryptoFailure):
        raise RotationRefused("the rotation request does not verify") from None
    new = PublicIdentity("agent", current.name, sign_public, box_public)
    if old_key_id != current.key_id or new.key_id == current.key_id:
        raise RotationRefused(
            f"the request replaces key {old_key_id}, not the current key {current.key_id}",
            code=ROTATION_REPLAYED,
        )
    if str(fields.get("new_key_id")) != new.key_id:
        raise RotationRefused("the request's key id does not match its keys")
    return new
