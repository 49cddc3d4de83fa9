"""The gateway's root key file: kept offline, always passphrase-wrapped (Argon2id).

Layout (JSON, 0600)::

    {"relay_root_key": 1, "gateway": "hq", "version": 1, "root_public": "<hex>",
     "kdf": {"salt": "<b64>", "opslimit": N, "memlimit": N}, "private": "<b64 sealed seed>"}

The passphrase comes from the file named by ``RELAY_ROOT_PASSPHRASE_FILE`` or, on a terminal,
from a prompt; never from an environment variable's value or a command line.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay import crypto
from relay.codes import (
    ALREADY_EXISTS,
    BAD_PASSPHRASE,
    BAD_ROOT_KEY,
    PASSPHRASE_REQUIRED,
    UNSAFE_PERMISSIONS,
    WEAK_PASSPHRASE,
)
from relay.errors import UsageError
from relay.trust.signer import Signer

PASSPHRASE_FILE_ENV = "RELAY_ROOT_PASSPHRASE_FILE"  # noqa: S105 - a variable name
MAX_FILE = 64 * 1024
MIN_PASSPHRASE = 8


@dataclass(frozen=True)
class RootKey:
    """An unlocked root key: an Ed25519 seed in memory (the box half of ``keys`` is unused) or
    a signer that asks a PKCS#11 token."""

    gateway: str
    version: int
    keys: crypto.KeyPair | Signer

    def __repr__(self) -> str:
        return f"RootKey({self.gateway}, v{self.version}, <private>)"


def root_passphrase(confirm: bool = False, variable: str = PASSPHRASE_FILE_ENV) -> str:
    """The root passphrase from the file named by ``variable`` or a terminal prompt."""
    named = os.environ.get(variable)
    if named:
        try:
            text = Path(named).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError:
            raise UsageError(
                f"cannot read the root passphrase file named by {variable}",
                code=PASSPHRASE_REQUIRED,
            ) from None
    else:
        import sys

        import click

        if not sys.stdin.isatty():
            raise UsageError(
                f"the root key needs a passphrase: set {variable} or use a terminal",
                code=PASSPHRASE_REQUIRED,
            )
        text = str(
            click.prompt("root key passphrase", hide_input=True, confirmation_prompt=confirm)
        )
    if len(text) < MIN_PASSPHRASE:
        raise UsageError(
            f"the root passphrase must have at least {MIN_PASSPHRASE} characters",
            code=WEAK_PASSPHRASE,
        )
    return text


def create_root_file(path: Path, gateway: str, version: int, passphrase: str) -> RootKey:
    """A new root key written to ``path`` (refuses to overwrite: ``already_exists``)."""
    from relay.transport.folder import write_atomic

    if path.exists() or path.is_symlink():
        raise UsageError(f"{path} already exists", code=ALREADY_EXISTS)
    keys = crypto.KeyPair(crypto.random_bytes(32), crypto.random_bytes(32))
    wrapped = crypto.wrap(keys.sign_seed, passphrase)
    doc = {
        "relay_root_key": 1,
        "gateway": gateway,
        "version": version,
        "root_public": keys.sign_public.hex(),
        "kdf": {
            "salt": crypto.b64(wrapped.salt),
            "opslimit": wrapped.opslimit,
            "memlimit": wrapped.memlimit,
        },
        "private": crypto.b64(wrapped.sealed),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path.parent, path.name, json.dumps(doc, indent=2).encode("ascii") + b"\n")
    return RootKey(gateway, version, keys)


def create_token_root_file(
    path: Path, gateway: str, version: int, module: str, token: str, pin: str
) -> RootKey:
    """A new root key generated in a PKCS#11 token; ``path`` records where it is (no secret)."""
    from relay.transport.folder import write_atomic
    from relay.trust.pkcs11_root import TokenKey, generate

    if path.exists() or path.is_symlink():
        raise UsageError(f"{path} already exists", code=ALREADY_EXISTS)
    where = TokenKey(module, token, f"relay-root-{gateway}-{version}")
    signer = generate(where, pin)
    doc = {
        "relay_root_key": 1,
        "gateway": gateway,
        "version": version,
        "root_public": signer.sign_public.hex(),
        "pkcs11": where.to_json(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path.parent, path.name, json.dumps(doc, indent=2).encode("ascii") + b"\n")
    return RootKey(gateway, version, signer)


def load_root_file(path: Path, passphrase: str) -> RootKey:
    """Unlock the root key at ``path``: ``bad_root_key``, ``bad_passphrase`` otherwise. For a
    key in a PKCS#11 token, ``passphrase`` is the token's user PIN."""
    doc = _read(path)
    if "pkcs11" in doc:
        return _token_root(path, doc, passphrase)
    try:
        kdf = doc["kdf"]
        wrapped = crypto.Wrapped(
            crypto.unb64(kdf["salt"]),
            int(kdf["opslimit"]),
            int(kdf["memlimit"]),
            crypto.unb64(doc["private"]),
        )
        gateway, version = str(doc["gateway"]), int(doc["version"])
        public = bytes.fromhex(doc["root_public"])
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"{path} is not a relay root key file", code=BAD_ROOT_KEY) from None
    try:
        seed = crypto.unwrap(wrapped, passphrase)
    except crypto.CryptoFailure:
        raise UsageError("wrong root passphrase", code=BAD_PASSPHRASE) from None
    keys = crypto.KeyPair(seed, bytes(32))
    if keys.sign_public != public:
        raise UsageError(f"{path} is inconsistent", code=BAD_ROOT_KEY)
    return RootKey(gateway, version, keys)


def _token_root(path: Path, doc: dict[str, Any], pin: str) -> RootKey:
    from relay.trust.pkcs11_root import TokenKey, open_signer

    try:
        where = TokenKey(**{k: str(v) for k, v in doc["pkcs11"].items()})
        gateway, version = str(doc["gateway"]), int(doc["version"])
        public = bytes.fromhex(doc["root_public"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise UsageError(f"{path} is not a relay root key file", code=BAD_ROOT_KEY) from None
    return RootKey(gateway, version, open_signer(where, pin, public))


def _read(path: Path) -> dict[str, Any]:
    try:
        info = path.lstat()
    except OSError:
        raise UsageError(f"cannot read the root key file {path}", code=BAD_ROOT_KEY) from None
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE:
        raise UsageError(f"{path} is not a root key file", code=BAD_ROOT_KEY)
    if info.st_mode & 0o077:
        raise UsageError(f"{path} is readable by others; run chmod 600", code=UNSAFE_PERMISSIONS)
    try:
        doc = json.loads(path.read_text(encoding="ascii"))
        if not isinstance(doc, dict) or doc.get("relay_root_key") != 1:
            raise ValueError
    except (OSError, ValueError):
        raise UsageError(f"{path} is not a relay root key file", code=BAD_ROOT_KEY) from None
    return doc
