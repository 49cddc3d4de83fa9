"""The field guard: keep secret values out of audit records by refusing secret-looking names.

A record's ``fields`` describe an action (``path``, ``reason``, ``bundle_seq``, ``app``, ``user``),
never the secret itself. The guard cannot read minds: a secret passed under a harmless name such
as ``reason`` goes through. What it stops is the likely slip: ``fields=dict(row)`` or
``value=...``, ``password=...``, ``api_token=...``.

Rule: a field name is split on ``_``; if any part is a secret word (:data:`SECRET_WORDS`) the
name is refused, unless its last part marks metadata about the secret (:data:`METADATA_SUFFIXES`:
``secret_path``, ``token_id``, ``key_id``, ``value_len`` pass). ``hash`` is deliberately not a
metadata suffix: the hash of a short secret is an offline guessing oracle, so ``secret_hash`` is
refused. A caller that knows better names the field in ``allow``.

The error names the key, never the value.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping

from relay.audit.record import FieldValue, check_fields

SECRET_WORDS = frozenset(
    {
        "value",
        "values",
        "secret",
        "secrets",
        "password",
        "passwd",
        "passphrase",
        "token",
        "credential",
        "credentials",
        "private",
        "privkey",
        "key",
        "plaintext",
        "cleartext",
        "pin",
    }
)
METADATA_SUFFIXES = frozenset(
    {
        "id",
        "path",
        "name",
        "count",
        "len",
        "bytes",
        "size",
        "ttl",
        "kind",
        "version",
        "expires",
        "fingerprint",
    }
)


class UnsafeFieldError(ValueError):
    """A field name looks like it carries a secret value (a programming error)."""


@functools.lru_cache(maxsize=1024)
def is_secret_looking(name: str) -> bool:
    """True if ``name`` would be refused by :func:`guard_fields` without an ``allow``."""
    parts = name.split("_")
    if parts[-1] in METADATA_SUFFIXES and len(parts) > 1:
        return False
    return any(part in SECRET_WORDS for part in parts)


def guard_fields(
    fields: Mapping[str, FieldValue], allow: Collection[str] = ()
) -> dict[str, FieldValue]:
    """A checked copy of ``fields``; ``UnsafeFieldError``/``ValueError`` if it may not be logged."""
    check_fields(fields)
    for name in fields:
        if name not in allow and is_secret_looking(name):
            raise UnsafeFieldError(
                f"audit field {name!r} looks like it carries a secret value; "
                "log metadata (path, length) instead, or allow the name explicitly"
            )
    return dict(fields)
