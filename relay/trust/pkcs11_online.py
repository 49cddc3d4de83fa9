"""An online key pair held in a PKCS#11 token (tested with SoftHSM2 2.6.1): the Ed25519 half
signs in the token (``CKM_EDDSA``); the X25519 half never leaves it either, the token derives
the shared point with a peer (``CKM_ECDH1_DERIVE``, no KDF) and relay turns that into the NaCl
box key (:func:`relay.crypto.box_key_from_shared`, HSalsa20), so bundles seal and open exactly
as with a key pair in a file.

What leaves the token: signatures and, per peer, the X25519 shared point (it must be readable to
be hashed outside: a token that offered HSalsa20 would not need that). What never does: either
private key (both are generated in the token, ``CKA_SENSITIVE``, not extractable).

SoftHSM2 2.6.1 has no ``CKM_EC_MONTGOMERY_KEY_PAIR_GEN`` (0x1056): its X25519 keys are made with
``CKM_EC_EDWARDS_KEY_PAIR_GEN`` and the X25519 curve OID (1.3.101.110), and ECDH on them works.
A token that follows PKCS#11 3.0 to the letter uses the Montgomery mechanism instead; that path
is not written (no token here to test it on).

The gateway uses it through :mod:`outer_gateway.online_key` (``relay gateway key rotate
--pkcs11-token``, ``docs/keys.md``).
"""

from __future__ import annotations

from typing import Any

from relay import crypto
from relay.codes import ALREADY_EXISTS, PKCS11_FAILED, PKCS11_UNSUPPORTED
from relay.errors import UsageError
from relay.trust.pkcs11_root import ED25519_OID, TokenKey, _point, _session

X25519_OID = "1.3.101.110"


class TokenOnlineKey(crypto.HeldKeyPair):
    """The key pair ``key.label`` (``.sign`` and ``.box`` objects) in the token; usable wherever
    a :class:`relay.crypto.KeyPair` signs and seals (:class:`relay.crypto.HeldKeyPair`)."""

    def __init__(self, key: TokenKey, pin: str, sign_public: bytes, box_public: bytes) -> None:
        super().__init__(sign_public, box_public)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "_pin", pin)

    key: TokenKey
    _pin: str

    @property
    def key_id(self) -> str:
        return crypto.key_id(self.sign_public, self.box_public)

    def held_sign(self, message: bytes) -> bytes:
        """Ed25519 signature made by the token."""
        import pkcs11

        with _session(self.key, self._pin) as session:
            private = _private(session, self.key.label + ".sign")
            return bytes(private.sign(message, mechanism=pkcs11.Mechanism.EDDSA))

    def held_box_key(self, peer_box_public: bytes) -> bytes:
        """The NaCl box key with ``peer_box_public`` (what ``crypto_box_beforenm`` gives)."""
        import pkcs11

        with _session(self.key, self._pin) as session:
            private = _private(session, self.key.label + ".box")
            secret = private.derive_key(
                pkcs11.KeyType.GENERIC_SECRET,
                256,
                mechanism=pkcs11.Mechanism.ECDH1_DERIVE,
                mechanism_param=(pkcs11.KDF.NULL, None, peer_box_public),
                template={pkcs11.Attribute.SENSITIVE: False, pkcs11.Attribute.EXTRACTABLE: True},
                store=False,
            )
            shared = bytes(secret[pkcs11.Attribute.VALUE])
        return crypto.box_key_from_shared(shared)

    def __repr__(self) -> str:
        return f"TokenOnlineKey({self.key.token}/{self.key.label})"


def open_online(key: TokenKey, pin: str, sign_public: bytes, box_public: bytes) -> TokenOnlineKey:
    """The online key ``key`` as recorded (``pkcs11_failed`` if the token holds other keys)."""
    import pkcs11

    with _session(key, pin) as session:
        for suffix, expected in ((".sign", sign_public), (".box", box_public)):
            try:
                public = session.get_key(
                    object_class=pkcs11.ObjectClass.PUBLIC_KEY, label=key.label + suffix
                )
            except (pkcs11.NoSuchKey, pkcs11.MultipleObjectsReturned):
                raise UsageError(
                    f"no single key {key.label + suffix!r} in the token", code=PKCS11_FAILED
                ) from None
            if _point(public) != expected:
                raise UsageError("the token's online key is not this one", code=PKCS11_FAILED)
    return TokenOnlineKey(key, pin, sign_public, box_public)


def generate_online(key: TokenKey, pin: str) -> TokenOnlineKey:
    """A new online key pair in the token: Ed25519 (``.sign``) and X25519 (``.box``)."""
    import pkcs11

    with _session(key, pin) as session:
        if list(session.get_objects({pkcs11.Attribute.LABEL: key.label + ".sign"})):
            raise UsageError(f"the token already holds a key {key.label!r}", code=ALREADY_EXISTS)
        sign_public = _generate(session, key.label + ".sign", ED25519_OID, derive=False)
        box_public = _generate(session, key.label + ".box", X25519_OID, derive=True)
    return TokenOnlineKey(key, pin, sign_public, box_public)


def _generate(session: Any, label: str, oid: str, derive: bool) -> bytes:
    import pkcs11
    from pkcs11.util.ec import encode_named_curve_parameters

    private_template = {pkcs11.Attribute.SENSITIVE: True, pkcs11.Attribute.EXTRACTABLE: False}
    if derive:
        private_template[pkcs11.Attribute.DERIVE] = True
    try:
        public, _ = session.generate_keypair(
            pkcs11.KeyType.EC_EDWARDS,
            mechanism=pkcs11.Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
            public_template={pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters(oid)},
            private_template=private_template,
            store=True,
            label=label,
        )
    except pkcs11.PKCS11Error as exc:
        raise UsageError(
            f"the token cannot make this key ({type(exc).__name__})", code=PKCS11_UNSUPPORTED
        ) from None
    return _point(public)


def _private(session: Any, label: str) -> Any:
    import pkcs11

    try:
        return session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=label)
    except (pkcs11.NoSuchKey, pkcs11.MultipleObjectsReturned):
        raise UsageError(f"no single key {label!r} in the token", code=PKCS11_FAILED) from None
