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
        public, _ = nacl.bindings.crypto_sign_seed_keypair(self.sign_seed)
        return bytes(public)

    @property
    def box_public(self) -> bytes:
        return bytes(nacl.bindings.crypto_scalarmult_base(self.box_secret))

    def __repr__(self) -> str:
        return "KeyPair(<private>)"


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
    _, secret = nacl.bindings.crypto_sign_seed_keypair(keys.sign_seed)
    signed = nacl.bindings.crypto_sign(message, secret)
    return bytes(signed[:SIGNATURE_BYTES])


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
    nonce = nonce if nonce is not None else random_bytes(BOX_NONCE_BYTES)
    ciphertext = nacl.bindings.crypto_box(plaintext, nonce, recipient_box_public, keys.box_secret)
    return nonce + bytes(ciphertext)


def unseal(keys: KeyPair, sender_box_public: bytes, sealed: bytes) -> bytes:
    """Open a NaCl box from the sender; raises :class:`CryptoFailure` on any failure."""
    if len(sealed) < BOX_NONCE_BYTES + BOX_OVERHEAD:
        raise CryptoFailure
    nonce, ciphertext = sealed[:BOX_NONCE_BYTES], sealed[BOX_NONCE_BYTES:]
    try:
        return bytes(
            nacl.bindings.crypto_box_open(ciphertext, nonce, sender_box_public, keys.box_secret)
        )
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
