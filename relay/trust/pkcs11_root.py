"""Root keys in a PKCS#11 token (tested with SoftHSM2): Ed25519 via ``CKM_EC_EDWARDS_KEY_PAIR_GEN``
and ``CKM_EDDSA``. The private key is generated in the token as sensitive and not extractable;
relay only ever asks the token to sign. The token's user PIN is the root passphrase
(``RELAY_ROOT_PASSPHRASE_FILE`` or a prompt).

``python-pkcs11`` is imported only here, only when a root in a token is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relay.codes import (
    ALREADY_EXISTS,
    BAD_PASSPHRASE,
    BAD_ROOT_KEY,
    PKCS11_FAILED,
    PKCS11_UNSUPPORTED,
)
from relay.errors import UsageError

ED25519_OID = "1.3.101.112"
MODULE_ENV = "RELAY_PKCS11_MODULE"


@dataclass(frozen=True)
class TokenKey:
    """Where a root key lives: the PKCS#11 module, the token label and the key's label."""

    module: str
    token: str
    label: str

    def to_json(self) -> dict[str, str]:
        return {"module": self.module, "token": self.token, "label": self.label}


class Pkcs11Signer:
    """Signs with the private key ``key.label`` in the token; holds the PIN, never the key."""

    def __init__(self, key: TokenKey, pin: str, public: bytes) -> None:
        self.key = key
        self._pin = pin
        self._public = public

    @property
    def sign_public(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        import pkcs11

        with _session(self.key, self._pin) as session:
            private = session.get_key(
                object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=self.key.label
            )
            return bytes(private.sign(message, mechanism=pkcs11.Mechanism.EDDSA))

    def __repr__(self) -> str:
        return f"Pkcs11Signer({self.key.token}/{self.key.label})"


def generate(key: TokenKey, pin: str) -> Pkcs11Signer:
    """A new Ed25519 key pair in the token (refuses a label already in use)."""
    import pkcs11
    from pkcs11.util.ec import encode_named_curve_parameters

    with _session(key, pin) as session:
        if list(session.get_objects({pkcs11.Attribute.LABEL: key.label})):
            raise UsageError(f"the token already holds a key {key.label!r}", code=ALREADY_EXISTS)
        try:
            public, _ = session.generate_keypair(
                pkcs11.KeyType.EC_EDWARDS,
                mechanism=pkcs11.Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                public_template={
                    pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters(ED25519_OID)
                },
                private_template={
                    pkcs11.Attribute.SENSITIVE: True,
                    pkcs11.Attribute.EXTRACTABLE: False,
                },
                store=True,
                label=key.label,
            )
        except pkcs11.PKCS11Error as exc:
            raise UsageError(
                f"the token cannot make an Ed25519 key ({type(exc).__name__})",
                code=PKCS11_UNSUPPORTED,
            ) from None
        point = _point(public)
    return Pkcs11Signer(key, pin, point)


def open_signer(key: TokenKey, pin: str, expected_public: bytes) -> Pkcs11Signer:
    """The signer for an existing key; ``bad_root_key`` if the token holds another key."""
    import pkcs11

    with _session(key, pin) as session:
        try:
            public = session.get_key(object_class=pkcs11.ObjectClass.PUBLIC_KEY, label=key.label)
        except (pkcs11.NoSuchKey, pkcs11.MultipleObjectsReturned):
            raise UsageError(
                f"no single key {key.label!r} in the token", code=BAD_ROOT_KEY
            ) from None
        if _point(public) != expected_public:
            raise UsageError("the token's key is not this root", code=BAD_ROOT_KEY)
    return Pkcs11Signer(key, pin, expected_public)


def _point(public: Any) -> bytes:
    import pkcs11

    raw = bytes(public[pkcs11.Attribute.EC_POINT])
    # DER OCTET STRING (04 20 || 32 bytes) in PKCS#11 v3.0; some tokens give the bare 32 bytes.
    if len(raw) == 34 and raw[:2] == b"\x04\x20":
        return raw[2:]
    if len(raw) == 32:
        return raw
    raise UsageError("the token returned an unexpected Ed25519 public key", code=BAD_ROOT_KEY)


class _session:
    """An open, logged-in session on the token, closed on exit."""

    def __init__(self, key: TokenKey, pin: str) -> None:
        self.key, self.pin = key, pin
        self.session: Any = None

    def __enter__(self) -> Any:
        import pkcs11

        try:
            lib = pkcs11.lib(self.key.module)
            token = lib.get_token(token_label=self.key.token)
            self.session = token.open(rw=True, user_pin=self.pin)
        except pkcs11.PinIncorrect:
            raise UsageError("wrong token PIN", code=BAD_PASSPHRASE) from None
        except (pkcs11.NoSuchToken, pkcs11.MultipleTokensReturned):
            raise UsageError(f"no token labelled {self.key.token!r}", code=PKCS11_FAILED) from None
        except (OSError, RuntimeError, pkcs11.PKCS11Error) as exc:
            raise UsageError(
                f"cannot open the PKCS#11 token ({type(exc).__name__})", code=PKCS11_FAILED
            ) from None
        return self.session.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.session.__exit__(*exc)
