"""The offline install kit's signature: ``SHA256SUMS`` signed with the Ed25519 release key.

A kit (``make dist``) is ``relay-VERSION-offline-PYVER-PLATFORM.tar.gz`` holding one folder with
``wheels/``, ``sbom.cdx.json``, ``install.sh``, ``verify_kit.py``, ``SHA256SUMS`` (every other
file's SHA-256) and ``SHA256SUMS.sig`` (a raw 64-byte Ed25519 signature of ``SHA256SUMS``).
Keys are PEM files OpenSSL reads (SubjectPublicKeyInfo / PKCS#8), so a kit can be verified with
``openssl pkeyutl`` where relay is not installed yet (docs/offline-install.md).

:func:`verify_kit` reads the archive without extracting it: the signature first, then every
file against its listed hash, and no file may be unlisted (an added wheel would be installed).
"""

from __future__ import annotations

import base64
import hashlib
import tarfile
from pathlib import Path

from relay.errors import UsageError

SUMS = "SHA256SUMS"
SIGNATURE = "SHA256SUMS.sig"
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
MAX_KIT_BYTES = 1 << 30
KIT_BAD_SIGNATURE = "kit_bad_signature"
KIT_MODIFIED = "kit_modified"
KIT_MALFORMED = "kit_malformed"


def public_key_pem(public: bytes) -> str:
    return _pem("PUBLIC KEY", _SPKI_PREFIX + public)


def private_key_pem(seed: bytes) -> str:
    return _pem("PRIVATE KEY", _PKCS8_PREFIX + seed)


def _pem(label: str, der: bytes) -> str:
    body = base64.encodebytes(der).decode().replace("\n", "")
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


def read_pem(text: str, private: bool = False) -> bytes:
    """The raw 32-byte key of an Ed25519 PEM file; ``ValueError`` for anything else."""
    label = "PRIVATE KEY" if private else "PUBLIC KEY"
    lines = text.strip().splitlines()
    if (
        len(lines) < 3
        or lines[0] != f"-----BEGIN {label}-----"
        or lines[-1] != (f"-----END {label}-----")
    ):
        raise ValueError("not an Ed25519 PEM key")
    der = base64.b64decode("".join(lines[1:-1]), validate=True)
    prefix = _PKCS8_PREFIX if private else _SPKI_PREFIX
    if len(der) != len(prefix) + 32 or not der.startswith(prefix):
        raise ValueError("not an Ed25519 PEM key")
    return der[len(prefix) :]


def sign_sums(sums: bytes, seed: bytes) -> bytes:
    """The detached Ed25519 signature of ``SHA256SUMS``."""
    import nacl.signing

    return bytes(nacl.signing.SigningKey(seed).sign(sums).signature)


def sums_for(files: dict[str, bytes]) -> bytes:
    """``SHA256SUMS`` text (``sha256sum`` format) for ``{relative path: content}``."""
    lines = [f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n" for name in sorted(files)]
    return "".join(lines).encode()


def verify_kit(kit: Path, public_key: bytes) -> int:
    """Check a kit archive; returns how many files were verified, raises ``UsageError``."""
    files = _read_archive(kit)
    sums, signature = files.pop(SUMS, None), files.pop(SIGNATURE, None)
    if sums is None or signature is None:
        raise UsageError(f"{kit} has no {SUMS} and {SIGNATURE}", code=KIT_MALFORMED)
    import nacl.exceptions
    import nacl.signing

    try:
        nacl.signing.VerifyKey(public_key).verify(sums, signature)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        raise UsageError(
            f"the signature of {SUMS} does not verify with this key: do not install",
            code=KIT_BAD_SIGNATURE,
        ) from None
    listed = _parse_sums(sums)
    for name, data in files.items():
        if listed.get(name) != hashlib.sha256(data).hexdigest():
            state = "is not listed in" if name not in listed else "does not match"
            raise UsageError(f"{name} {state} {SUMS}: do not install", code=KIT_MODIFIED)
    missing = sorted(set(listed) - set(files))
    if missing:
        raise UsageError(f"{missing[0]} is listed but missing: do not install", code=KIT_MODIFIED)
    return len(files)


def _parse_sums(sums: bytes) -> dict[str, str]:
    listed: dict[str, str] = {}
    try:
        for line in sums.decode("ascii").splitlines():
            digest, name = line.split("  ", 1)
            if len(digest) != 64 or name in listed:
                raise ValueError
            listed[name] = digest
    except ValueError:
        raise UsageError(f"{SUMS} is malformed", code=KIT_MALFORMED) from None
    return listed


def _read_archive(kit: Path) -> dict[str, bytes]:
    """Every regular file of the archive, by its path below the kit's top folder."""
    try:
        if kit.stat().st_size > MAX_KIT_BYTES:
            raise ValueError
        files: dict[str, bytes] = {}
        with tarfile.open(kit, mode="r:gz") as tar:
            for info in tar.getmembers():
                if info.isdir():
                    continue
                name = info.name.partition("/")[2]
                if not info.isfile() or not name or ".." in name.split("/") or name in files:
                    raise ValueError
                handle = tar.extractfile(info)
                files[name] = handle.read() if handle else b""
    except (OSError, ValueError, tarfile.TarError, EOFError):
        raise UsageError(f"{kit} is not a relay kit archive", code=KIT_MALFORMED) from None
    return files
