"""Rotation items in the return stream: the optional ``rotation`` member of an audit payload.

Each item rides with the audit record that created it (``seq``), so it is re-sent in every audit
bundle until the gateway acknowledges that record (``ack.audit_seq`` of a forward bundle), and
the gateway takes it in the same transaction as the record: nothing is lost on a lossy link,
and an item seen twice is recognised by its ``id``::

    "rotation": [
      {"id": HEX32, "seq": N, "kind": "request", "path": P, "reason": "manual"|"expiry"},
      {"id": HEX32, "seq": N, "kind": "escrow",  "path": P, "version": V, "base": B,
       "value": VALUE_B64},
      {"id": HEX32, "seq": N, "kind": "outcome", "path": P, "version": V_OR_NULL,
       "status": STATUS, "detail": TEXT},
      {"id": HEX32, "seq": N, "kind": "hook", "path": P, "version": V, "hook": NAME,
       "result": "ok"|"failed"|"timeout", "exit": STATUS_OR_NULL}]

- ``request``: rotate ``path`` at the gateway; the next forward bundle carries the new version.
- ``escrow``: the agent rotated ``path`` itself (a local executor) from version ``base`` to the
  new value; the gateway records it as a new version (the vault side's truth). The value is
  inside the sealed payload only, never in an audit record.
- ``outcome``: what happened on the isolated side (``applied``: a new version from the gateway
  or a local executor is current; ``activated``: a pre-staged version switched on the agent's
  clock; ``failed``, ``timeout``, ``recovered``, ``abandoned``: a local executor's result;
  ``hook_ok``, ``hook_failed``: reserved), for ``relay gateway rotation status``.
- ``hook``: a change hook ran because ``path`` changed to ``version``: the hook's name (1-64
  printable characters), its ``result`` and, for a command that exited, its ``exit`` status
  (0-255; ``null`` otherwise). Never the hook's output.

Pure: dicts in, validated items out, ``malformed`` otherwise (unknown members are refused).
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from typing import Any

from relay.errors import MALFORMED, BundleRejected
from relay.paths import is_valid_path

KINDS = ("request", "escrow", "outcome", "hook")
REASONS = ("manual", "expiry")
STATUSES = (
    "applied",
    "activated",
    "failed",
    "timeout",
    "recovered",
    "abandoned",
    "hook_ok",
    "hook_failed",
)
HOOK_RESULTS = ("ok", "failed", "timeout")
MAX_DETAIL = 200
MAX_HOOK_NAME = 64
MAX_INT = 2**53 - 1
_ID = re.compile(r"[0-9a-f]{32}")
_MEMBERS = {
    "request": {"id", "seq", "kind", "path", "reason"},
    "escrow": {"id", "seq", "kind", "path", "version", "base", "value"},
    "outcome": {"id", "seq", "kind", "path", "version", "status", "detail"},
    "hook": {"id", "seq", "kind", "path", "version", "hook", "result", "exit"},
}


@dataclass(frozen=True)
class RotationItem:
    """One item; fields a kind does not use are ``None``. ``value`` only for escrow."""

    id: str
    seq: int
    kind: str
    path: str
    reason: str | None = None
    version: int | None = None
    base: int | None = None
    value: bytes | None = None
    status: str | None = None
    detail: str | None = None
    hook: str | None = None
    result: str | None = None
    exit: int | None = None

    def __repr__(self) -> str:
        return f"RotationItem({self.kind}, {self.path!r}, id={self.id}, value=<hidden>)"

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": self.id, "seq": self.seq, "kind": self.kind, "path": self.path}
        if self.kind == "request":
            doc["reason"] = self.reason
        elif self.kind == "escrow":
            assert self.value is not None  # noqa: S101 - an escrow always carries its value
            doc.update(
                version=self.version,
                base=self.base,
                value=binascii.b2a_base64(self.value, newline=False).decode(),
            )
        elif self.kind == "hook":
            doc.update(version=self.version, hook=self.hook, result=self.result, exit=self.exit)
        else:
            doc.update(version=self.version, status=self.status, detail=self.detail)
        return doc


def decode_rotation_items(raw: Any, max_entries: int, max_secret_bytes: int) -> list[RotationItem]:
    """Validate the ``rotation`` member."""
    if not isinstance(raw, list) or len(raw) > max_entries:
        raise _malformed("rotation is not an array within the entry cap")
    items = [_item(doc, max_secret_bytes) for doc in raw]
    if len({item.id for item in items}) != len(items):
        raise _malformed("a rotation item id appears twice")
    return items


def _item(doc: Any, max_secret_bytes: int) -> RotationItem:
    if not isinstance(doc, dict) or doc.get("kind") not in KINDS:
        raise _malformed("a rotation item has no known kind")
    kind = doc["kind"]
    if set(doc) != _MEMBERS[kind]:
        raise _malformed(f"a rotation {kind} has other members than {sorted(_MEMBERS[kind])}")
    ident, seq, path = doc["id"], doc["seq"], doc["path"]
    if not (isinstance(ident, str) and _ID.fullmatch(ident)) or not _is_int(seq, 1):
        raise _malformed("a rotation item has a bad id or seq")
    if not (isinstance(path, str) and is_valid_path(path)):
        raise _malformed("a rotation item has a bad path")
    if kind == "request":
        if doc["reason"] not in REASONS:
            raise _malformed("a rotation request has an unknown reason")
        return RotationItem(ident, seq, kind, path, reason=doc["reason"])
    if kind == "escrow":
        return _escrow(doc, ident, seq, path, max_secret_bytes)
    if kind == "hook":
        return _hook(doc, ident, seq, path)
    version, status, detail = doc["version"], doc["status"], doc["detail"]
    if version is not None and not _is_int(version, 1):
        raise _malformed("a rotation outcome has a bad version")
    if status not in STATUSES:
        raise _malformed("a rotation outcome has an unknown status")
    if not isinstance(detail, str) or len(detail) > MAX_DETAIL:
        raise _malformed("a rotation outcome detail is not a short string")
    return RotationItem(ident, seq, kind, path, version=version, status=status, detail=detail)


def _escrow(doc: dict[str, Any], ident: str, seq: int, path: str, cap: int) -> RotationItem:
    version, base, value = doc["version"], doc["base"], doc["value"]
    if not _is_int(version, 1) or not _is_int(base, 0) or version <= base:
        raise _malformed("a rotation escrow has bad versions")
    if not isinstance(value, str) or len(value) > 4 * ((cap + 2) // 3):
        raise _malformed("a rotation escrow value is missing or over the size cap")
    try:
        decoded = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise _malformed("a rotation escrow value is not valid base64") from None
    if len(decoded) > cap:
        raise _malformed("a rotation escrow value is over the size cap")
    return RotationItem(ident, seq, "escrow", path, version=version, base=base, value=decoded)


def _hook(doc: dict[str, Any], ident: str, seq: int, path: str) -> RotationItem:
    version, name, result, status = doc["version"], doc["hook"], doc["result"], doc["exit"]
    if not _is_int(version, 1):
        raise _malformed("a rotation hook item has a bad version")
    if not (isinstance(name, str) and 0 < len(name) <= MAX_HOOK_NAME and name.isprintable()):
        raise _malformed("a rotation hook item has a bad hook name")
    if result not in HOOK_RESULTS:
        raise _malformed("a rotation hook item has an unknown result")
    if status is not None and not (type(status) is int and 0 <= status <= 255):
        raise _malformed("a rotation hook item has a bad exit status")
    return RotationItem(
        ident, seq, "hook", path, version=version, hook=name, result=result, exit=status
    )


def _is_int(value: object, low: int) -> bool:
    return type(value) is int and low <= value <= MAX_INT


def _malformed(message: str) -> BundleRejected:
    return BundleRejected(message, code=MALFORMED)
