"""Every cryptographic call relay makes, in one place (the sharp layer).

- Signatures: Ed25519 (libsodium ``crypto_sign``), keys kept as 32-byte seeds.
- Sealing: NaCl box (X25519 + XSalsa20-Poly1305), sender secret + recipient public key; the box
  authenticates the sender as well as hiding the payload.
- Key wrapping: Argon2id (``crypto_pwhash``, moderate limits) + XSalsa20-Poly1305 secretbox.
- Hashes: SHA-256 (hashlib).

Every failure to authenticate or decrypt raises the same opaque :class:`CryptoFailure`: no oracle.
Callers translate it into their own reason code.
"""

from __future__ import annotations

import base64
import hashlib
import struct

import nacl.bindings
import nacl.exceptions

from relay.frozen import frozen

SIGNATURE_BYTES = 64
KEY_BYTES = 32
BOX_NONCE_BYTES = 24
BOX_OVERHEAD = 16


class CryptoFailure(Exception):
    """Authentication or decryption failed. Carries no detail on purpose."""


def sha256(data: bytes) -> bytes:
    """The SHA-256 digest of ``data``."""
    return hashlib.sha256(data).digest()


def b64(data: bytes) -> str:
    """Standard base64 text of ``data``."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, length: int | None = None) -> bytes:
    """Decode base64 strictly; raises ``ValueError`` on bad text or a wrong length."""
    data = base64.b64decode(text.encode("ascii"), validate=True)
    if length is not None and len(data) != length:
        raise ValueError(f"expected {length} bytes, got {len(data)}")
    return data


# -- keys ------------------------------------------------------------------------------------


@frozen
class KeyPair:
    """One identity's private keys: an Ed25519 seed and an X25519 secret key (32 bytes each)."""

    sign_seed: bytes
    box_secret: bytes

    @property
    def sign_public(self) -> bytes:
        return _signing_secret(self)[KEY_BYTES:]  # libsodium's secret key: seed, then public

    @property
    def box_public(self) -> bytes:
        return bytes(nacl.bindings.crypto_scalarmult_base(self.box_secret))

    def __repr__(self) -> str:
        return "KeyPair(<private>)"


class HeldKeyPair(KeyPair):
    """A key pair whose private halves are held elsewhere (a PKCS#11 token): it signs and gives
    the box key with a peer on request, and has no seed or secret here (both empty).
    :func:`sign`, :func:`seal` and :func:`unseal` call it; it is never written to a key file."""

    def __init__(self, sign_public: bytes, box_public: bytes) -> None:
        super().__init__(b"", b"")
        object.__setattr__(self, "_publics", (sign_public, box_public))

    @property
    def sign_public(self) -> bytes:
        return bytes(self._publics[0])

    @property
    def box_public(self) -> bytes:
        return bytes(self._publics[1])

    def held_sign(self, message: bytes) -> bytes:
        """The Ed25519 signature of ``message``, made where the key is held."""
        raise NotImplementedError

    def held_box_key(self, peer_box_public: bytes) -> bytes:
        """The NaCl box key with ``peer_box_public`` (``crypto_box_beforenm``)."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HeldKeyPair) and self._publics == other._publics

    def __hash__(self) -> int:
        return hash(self._publics)

    def __repr__(self) -> str:
        return "HeldKeyPair(<held>)"

    _publics: tuple[bytes, bytes]


def generate_keypair() -> KeyPair:
    """Fresh keys from the operating system's CSPRNG."""
    return KeyPair(random_bytes(KEY_BYTES), random_bytes(KEY_BYTES))


def random_bytes(count: int) -> bytes:
    """``count`` bytes from the CSPRNG."""
    return bytes(nacl.bindings.randombytes(count))


def key_id(sign_public: bytes, box_public: bytes) -> str:
    """The short id naming a pair of public keys inside bundles: 16 hex digits."""
    return hashlib.sha256(b"relay-key-id-v1\x00" + sign_public + box_public).hexdigest()[:16]


def fingerprint(sign_public: bytes, box_public: bytes) -> str:
    """A human-comparable fingerprint, SSH style: ``SHA256:`` and unpadded base64."""
    digest = hashlib.sha256(b"relay-fingerprint-v1\x00" + sign_public + box_public).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


# -- signatures ------------------------------------------------------------------------------


def sign(keys: KeyPair, message: bytes) -> bytes:
    """The detached Ed25519 signature of ``message``."""
    if isinstance(keys, HeldKeyPair):
        return keys.held_sign(message)
    signed = nacl.bindings.crypto_sign(message, _signing_secret(keys))
    return bytes(signed[:SIGNATURE_BYTES])


_DERIVED_ATTR = "_derived_sign_key"  # the attribute of a KeyPair caching it


def _signing_secret(keys: KeyPair) -> bytes:
    """libsodium's 64-byte Ed25519 secret key (seed and public key) for ``keys``, derived from
    the seed at the first signature and kept on this key pair object only: an export pass signs
    thousands of bundles with one key, and each derivation is a scalar multiplication. The
    cache lives and dies with the object (never in a table shared between keys): another key,
    say the one a rotation made, is another object and derives its own. It is no more secret
    than the seed the object holds already, and no repr or comparison shows it."""
    cached: bytes | None = keys.__dict__.get(_DERIVED_ATTR)
    if cached is None:
        _, derived = nacl.bindings.crypto_sign_seed_keypair(keys.sign_seed)
        cached = bytes(derived)
        object.__setattr__(keys, _DERIVED_ATTR, cached)  # frozen: set once, as __init__ does
    return cached


def verify(sign_public: bytes, message: bytes, signature: bytes) -> None:
    """Check a detached Ed25519 signature; raises :class:`CryptoFailure` if it does not hold."""
    if len(signature) != SIGNATURE_BYTES or len(sign_public) != KEY_BYTES:
        raise CryptoFailure
    try:
        nacl.bindings.crypto_sign_open(signature + message, sign_public)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        raise CryptoFailure from None


# -- sealing ---------------------------------------------------------------------------------


def seal(
    keys: KeyPair, recipient_box_public: bytes, plaintext: bytes, nonce: bytes | None = None
) -> bytes:
    """NaCl box of ``plaintext`` to the recipient: ``nonce || ciphertext``.

    ``nonce`` is random unless given (fixed nonces are for test vectors only).
    """
    if isinstance(keys, HeldKeyPair):
        return seal_with_box_key(keys.held_box_key(recipient_box_public), plaintext, nonce)
    nonce = nonce if nonce is not None else random_bytes(BOX_NONCE_BYTES)
    ciphertext = nacl.bindings.crypto_box(plaintext, nonce, recipient_box_public, keys.box_secret)
    return nonce + bytes(ciphertext)


def unseal(keys: KeyPair, sender_box_public: bytes, sealed: bytes) -> bytes:
    """Open a NaCl box from the sender; raises :class:`CryptoFailure` on any failure."""
    if isinstance(keys, HeldKeyPair):
        return unseal_with_box_key(keys.held_box_key(sender_box_public), sealed)
    if len(sealed) < BOX_NONCE_BYTES + BOX_OVERHEAD:
        raise CryptoFailure
    nonce, ciphertext = sealed[:BOX_NONCE_BYTES], sealed[BOX_NONCE_BYTES:]
    try:
        return bytes(
            nacl.bindings.crypto_box_open(ciphertext, nonce, sender_box_public, keys.box_secret)
        )
    except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError):
        raise CryptoFailure from None


# -- sealing with a precomputed box key (the sharp layer of a key held in a token) -------------
#
# crypto_box is HSalsa20(X25519(secret, public), 0^16) as the key of XSalsa20-Poly1305. A token
# that keeps the X25519 secret and hands out only the shared point (PKCS#11 CKM_ECDH1_DERIVE,
# relay/trust/pkcs11_online.py) needs the HSalsa20 step done here: PyNaCl does not expose
# crypto_core_hsalsa20, so it is written out below and checked against crypto_box_beforenm.

_SIGMA = struct.unpack("<4I", b"expand 32-byte k")
_MASK = 0xFFFFFFFF


def box_key_from_shared(shared: bytes) -> bytes:
    """The crypto_box key for an X25519 shared point: HSalsa20(shared, 0^16)."""
    if len(shared) != KEY_BYTES:
        raise CryptoFailure
    return hsalsa20(shared, bytes(16))


def hsalsa20(key: bytes, nonce16: bytes) -> bytes:
    """HSalsa20 (the XSalsa20 paper, section 2): 32 bytes from a 32-byte key, 16-byte input."""
    k, n = struct.unpack("<8I", key), struct.unpack("<4I", nonce16)
    x = [_SIGMA[0], *k[:4], _SIGMA[1], *n, _SIGMA[2], *k[4:], _SIGMA[3]]
    for _ in range(10):
        for a, b, c, d in _DOUBLE_ROUND:
            x[b] ^= _rotl((x[a] + x[d]) & _MASK, 7)
            x[c] ^= _rotl((x[b] + x[a]) & _MASK, 9)
            x[d] ^= _rotl((x[c] + x[b]) & _MASK, 13)
            x[a] ^= _rotl((x[d] + x[c]) & _MASK, 18)
    return struct.pack("<8I", x[0], x[5], x[10], x[15], x[6], x[7], x[8], x[9])


# (a, b, c, d): b ^= (a+d)<<<7, c ^= (b+a)<<<9, d ^= (c+b)<<<13, a ^= (d+c)<<<18
_DOUBLE_ROUND = (
    (0, 4, 8, 12), (5, 9, 13, 1), (10, 14, 2, 6), (15, 3, 7, 11),  # columns
    (0, 1, 2, 3), (5, 6, 7, 4), (10, 11, 8, 9), (15, 12, 13, 14),  # rows
)  # fmt: skip


def _rotl(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (32 - shift))) & _MASK


def seal_with_box_key(box_key: bytes, plaintext: bytes, nonce: bytes | None = None) -> bytes:
    """As :func:`seal`, with the precomputed key of the sender/recipient pair."""
    nonce = nonce if nonce is not None else random_bytes(BOX_NONCE_BYTES)
    return nonce + bytes(nacl.bindings.crypto_box_afternm(plaintext, nonce, box_key))


def unseal_with_box_key(box_key: bytes, sealed: bytes) -> bytes:
    """As :func:`unseal`, with the precomputed key; :class:`CryptoFailure` on any failure."""
    if len(sealed) < BOX_NONCE_BYTES + BOX_OVERHEAD:
        raise CryptoFailure
    nonce, ciphertext = sealed[:BOX_NONCE_BYTES], sealed[BOX_NONCE_BYTES:]
    try:
        return bytes(nacl.bindings.crypto_box_open_afternm(ciphertext, nonce, box_key))
    except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError):
        raise CryptoFailure from None


# -- passphrase wrapping ---------------------------------------------------------------------


@frozen
class Wrapped:
    """A blob wrapped under a passphrase with Argon2id."""

    salt: bytes
    opslimit: int
    memlimit: int
    sealed: bytes


def wrap(blob: bytes, passphrase: str) -> Wrapped:
    """Encrypt ``blob`` under a key derived from ``passphrase`` (Argon2id, moderate limits)."""
    import nacl.pwhash  # here, not at the top: `relay agent get` of a plain home never needs it
    import nacl.secret

    opslimit = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
    memlimit = nacl.pwhash.argon2id.MEMLIMIT_MODERATE
    salt = random_bytes(nacl.pwhash.argon2id.SALTBYTES)
    key = _derive(passphrase, salt, opslimit, memlimit)
    sealed = bytes(nacl.secret.SecretBox(key).encrypt(blob))
    return Wrapped(salt, opslimit, memlimit, sealed)


def unwrap(wrapped: Wrapped, passphrase: str) -> bytes:
    """Decrypt a :class:`Wrapped` blob; raises :class:`CryptoFailure` on a wrong passphrase."""
    import nacl.secret

    key = _derive(passphrase, wrapped.salt, wrapped.opslimit, wrapped.memlimit)
    try:
        return bytes(nacl.secret.SecretBox(key).decrypt(wrapped.sealed))
    except nacl.exceptions.CryptoError:
        raise CryptoFailure from None


def _derive(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    import nacl.pwhash
    import nacl.secret

    return bytes(
        nacl.pwhash.argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE,
            passphrase.encode("utf-8"),
            salt,
            opslimit=opslimit,
            memlimit=memlimit,
        )
    )
