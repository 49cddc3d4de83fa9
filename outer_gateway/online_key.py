"""Where the gateway's online key pair lives: ``identity.key`` (the default) or a PKCS#11 token.

``relay gateway key rotate --pkcs11-token LABEL`` makes the new online key pair in the token
(:mod:`relay.trust.pkcs11_online`) and records a reference, ``HOME/online.pkcs11.json`` (module,
token, key label and the two public keys; no secret). From then on the export signs and seals,
and the return-stream import opens, through the token; the token's user PIN is read from the
file named by ``RELAY_PKCS11_PIN_FILE``. ``identity.key`` keeps the home's store key (and the
file key pair it held before, unused). A later ``key rotate`` without ``--pkcs11-token`` moves
the online key back to a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from relay import crypto
from relay.codes import BAD_TRUST_FILE, PASSPHRASE_REQUIRED
from relay.errors import UsageError
from relay.home import Home
from relay.identity import PublicIdentity, identity_of
from relay.trust.pkcs11_online import TokenOnlineKey, open_online
from relay.trust.pkcs11_root import TokenKey

REF_FILE = "online.pkcs11.json"
NEXT_REF_FILE = "online.pkcs11.next.json"
PIN_FILE_ENV = "RELAY_PKCS11_PIN_FILE"


def online_identity(home: Home) -> PublicIdentity:
    """The online identity (public keys only: no PIN, no token needed)."""
    ref = read_ref(home, REF_FILE)
    if ref is None:
        return home.identity
    return PublicIdentity("gateway", home.identity.name, ref[1], ref[2])


def online_keys(home: Home) -> tuple[PublicIdentity, crypto.KeyPair]:
    """The online identity and the keys that sign and seal for it (a token's, or the file's)."""
    ref = read_ref(home, REF_FILE)
    if ref is None:
        return home.identity, home.secrets.keys
    key = open_online(ref[0], token_pin(), ref[1], ref[2])
    return identity_of("gateway", home.identity.name, key), key


def token_pin() -> str:
    """The token's user PIN, from the file named by ``RELAY_PKCS11_PIN_FILE``."""
    from relay.transport.folder import read_capped

    named = os.environ.get(PIN_FILE_ENV)
    if not named:
        raise UsageError(
            f"the online key is in a PKCS#11 token: set {PIN_FILE_ENV} to its PIN file",
            code=PASSPHRASE_REQUIRED,
        )
    try:
        pin = read_capped(Path(named), 4096).decode("utf-8").rstrip("\r\n")
    except Exception:
        raise UsageError(
            f"cannot read the PIN file given by {PIN_FILE_ENV}", code=PASSPHRASE_REQUIRED
        ) from None
    if not pin:
        raise UsageError(f"the PIN file given by {PIN_FILE_ENV} is empty", code=PASSPHRASE_REQUIRED)
    return pin


def write_ref(home: Home, name: str, key: TokenOnlineKey) -> None:
    """Record where the online key is (atomically; public values only)."""
    from relay.transport.folder import write_atomic

    doc = {
        "relay_online_pkcs11": 1,
        **key.key.to_json(),
        "sign_public": key.sign_public.hex(),
        "box_public": key.box_public.hex(),
    }
    write_atomic(home.path, name, json.dumps(doc, indent=2).encode("ascii") + b"\n")


def read_ref(home: Home, name: str) -> tuple[TokenKey, bytes, bytes] | None:
    """A recorded token key, or ``None`` (``bad_trust_file`` if damaged)."""
    path = home.path / name
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="ascii"))
        key = TokenKey(str(doc["module"]), str(doc["token"]), str(doc["label"]))
        sign_public, box_public = (
            bytes.fromhex(doc["sign_public"]),
            bytes.fromhex(doc["box_public"]),
        )
        if len(sign_public) != crypto.KEY_BYTES or len(box_public) != crypto.KEY_BYTES:
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"{path} is damaged", code=BAD_TRUST_FILE) from None
    return key, sign_public, box_public


def ref_key_id(home: Home, name: str) -> str | None:
    ref = read_ref(home, name)
    return None if ref is None else crypto.key_id(ref[1], ref[2])


def promote_next_ref(home: Home) -> None:
    """The next token key becomes the online key (a rename: atomic)."""
    (home.path / NEXT_REF_FILE).replace(home.path / REF_FILE)


def remove_ref(home: Home, name: str) -> None:
    (home.path / name).unlink(missing_ok=True)
