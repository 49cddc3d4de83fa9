"""What travels in front of a file inside the FEC-protected object, and safe file names.

The object a transfer carries is ``manifest || file``::

    name_len  H    length of the UTF-8 name, 1..255
    file_size Q    length of the file in bytes
    sha256    32s  SHA-256 of the file
    name      name_len bytes of UTF-8

so the name and the end-to-end checksum are protected by the same erasure code as the data.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import re
import struct
from dataclasses import dataclass

from relay.codes import CHECKSUM_MISMATCH, MALFORMED
from relay.errors import RelayError

_HEAD = struct.Struct(">HQ32s")
MAX_NAME_BYTES = 255
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


class ObjectRejected(RelayError):
    """A fully decoded transfer is inconsistent or fails its SHA-256: nothing is written."""

    code = CHECKSUM_MISMATCH


@dataclass(frozen=True)
class ReceivedFile:
    """A file that arrived whole and verified; ``name`` is already sanitised. ``data`` may be a
    view of the receiver's buffer (no copy of a large file)."""

    name: str
    data: bytes | memoryview


def encode_object(name: str, data: bytes) -> bytes:
    """The byte object a transfer carries for the file ``name`` with contents ``data``."""
    raw_name = safe_name(name).encode()
    digest = hashlib.sha256(data).digest()
    return _HEAD.pack(len(raw_name), len(data), digest) + raw_name + data


class FileChanged(Exception):
    """The file did not have the size it had when it was opened (it changed while read)."""


def read_object(name: str, handle: io.BufferedIOBase, size: int) -> memoryview:
    """What :func:`encode_object` gives for ``name`` and the ``size`` bytes left in ``handle``,
    with the file read straight into its place in the object (one copy of it in memory, not
    two); raises :class:`FileChanged` if ``handle`` holds fewer or more bytes."""
    raw_name = safe_name(name).encode()
    start = _HEAD.size + len(raw_name)
    obj = memoryview(mmap.mmap(-1, start + size))  # zero pages until written
    at = start
    while at < start + size:
        got = handle.readinto(obj[at:])
        if not got:
            raise FileChanged(f"ended after {at - start} of {size} bytes")
        at += got
    if handle.read(1):
        raise FileChanged(f"longer than {size} bytes")
    _HEAD.pack_into(obj, 0, len(raw_name), size, hashlib.sha256(obj[start:]).digest())
    obj[_HEAD.size : start] = raw_name
    return obj


def decode_object(obj: bytes | memoryview) -> ReceivedFile:
    """Split and verify a decoded object; raises :class:`ObjectRejected` on any mismatch."""
    if len(obj) < _HEAD.size:
        raise ObjectRejected("object shorter than its manifest", code=MALFORMED)
    name_len, file_size, digest = _HEAD.unpack_from(obj)
    start = _HEAD.size + name_len
    if not 1 <= name_len <= MAX_NAME_BYTES or len(obj) != start + file_size:
        raise ObjectRejected("manifest lengths do not match the object", code=MALFORMED)
    data = obj[start:]
    if hashlib.sha256(data).digest() != digest:
        raise ObjectRejected("SHA-256 of the received file does not match")
    name = bytes(obj[_HEAD.size : start]).decode("utf-8", errors="replace")
    return ReceivedFile(safe_name(name), data)


def safe_name(name: str) -> str:
    """The base name of ``name`` made safe to create in a folder.

    No path components, no leading dot, only ``[A-Za-z0-9._+-]`` (others become ``_``), at most
    255 bytes; an empty result becomes ``unnamed``. ``x.bundle`` stays ``x.bundle``.

    >>> safe_name("../../etc/.passwd")
    'passwd'
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base).lstrip(".")
    return cleaned[:MAX_NAME_BYTES] or "unnamed"
