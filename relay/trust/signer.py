"""Who signs trust documents: a seed in memory, or a key that never leaves a PKCS#11 token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from relay import crypto


class Signer(Protocol):
    """An Ed25519 signer."""

    @property
    def sign_public(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True)
class SeedSigner:
    """An Ed25519 seed held in memory."""

    keys: crypto.KeyPair

    @property
    def sign_public(self) -> bytes:
        return self.keys.sign_public

    def sign(self, message: bytes) -> bytes:
        return crypto.sign(self.keys, message)


def as_signer(key: crypto.KeyPair | Signer) -> Signer:
    """``key`` as a :class:`Signer` (a bare key pair signs with its seed)."""
    return SeedSigner(key) if isinstance(key, crypto.KeyPair) else key
