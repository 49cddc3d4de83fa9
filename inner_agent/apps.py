"""Applications registered to read secrets through the local API (``relay agent app …``).

An app has a name, a random ``client_id`` (also the registration's unique id: tokens, audit and
grants refer to it, so a name registered again inherits nothing), a client secret shown once at
registration, and the grant patterns it may read. The store keeps only SHA-256 of the secret:
the secret is 256 random bits, so a fast hash is as strong as a slow KDF here and keeps token
requests cheap (docs/adr/0006-app-secrets.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from functools import cached_property

from inner_agent.store import AgentStore
from relay.codes import APP_EXISTS, NOT_FOUND, USAGE_CODE
from relay.db import write_transaction
from relay.errors import UsageError
from relay.identity import check_name
from relay.paths import check_pattern, grant_matcher

CLIENT_ID = re.compile(r"app-[0-9a-f]{24}")  # also the registration's unique id
SECRET_PREFIX = "rs_"  # noqa: S105 - recognisable in leak scanners; 43 url-safe characters follow
_DUMMY_HASH = hashlib.sha256(b"relay: no such client").digest()


@dataclass(frozen=True)
class App:
    """A registered application (never its secret)."""

    name: str
    client_id: str
    patterns: tuple[str, ...]
    created_at: int

    @cached_property
    def _matcher(self) -> re.Pattern[str] | None:
        return grant_matcher(list(self.patterns))

    def may_read(self, path: str) -> bool:
        """Whether one of this app's patterns grants ``path``."""
        return self._matcher is not None and self._matcher.match(path) is not None


@dataclass(frozen=True)
class Credentials:
    """What ``app add`` prints once."""

    client_id: str
    client_secret: str

    def __repr__(self) -> str:
        return f"Credentials(client_id={self.client_id!r}, client_secret=<hidden>)"


def looks_like_client_id(value: str) -> bool:
    """Whether ``value`` has the shape of a client id. Anything else (a client secret pasted
    into the wrong field, say) must never be logged or recorded."""
    return CLIENT_ID.fullmatch(value) is not None


def hash_secret(client_secret: str) -> bytes:
    """SHA-256 of a client secret, as stored."""
    return hashlib.sha256(client_secret.encode("utf-8")).digest()


def add_app(store: AgentStore, name: str, patterns: list[str], now: int) -> Credentials:
    """Register ``name`` with ``patterns``; ``app_exists`` if the name is taken."""
    check_name(name)
    if not patterns:
        raise UsageError("give at least one --allow PATTERN", code=USAGE_CODE)
    for pattern in patterns:
        check_pattern(pattern)
    creds = Credentials(f"app-{secrets.token_hex(12)}", SECRET_PREFIX + secrets.token_urlsafe(32))
    from sqlalchemy import insert, select

    from inner_agent import schema

    t = schema.apps
    with write_transaction(store.engine) as conn:
        if conn.execute(select(t.c.name).where(t.c.name == name)).first() is not None:
            raise UsageError(f"an app named {name!r} exists; remove it first", code=APP_EXISTS)
        conn.execute(
            insert(t).values(
                name=name,
                client_id=creds.client_id,
                secret_sha256=hash_secret(creds.client_secret),
                patterns=json.dumps(sorted(set(patterns))),
                created_at=now,
            )
        )
    return creds


def remove_app(store: AgentStore, name: str) -> str:
    """Remove ``name`` and return its client_id; ``not_found`` if there is none. Its tokens stop
    working at once."""
    from sqlalchemy import delete, select

    from inner_agent import schema

    t = schema.apps
    with write_transaction(store.engine) as conn:
        client_id = conn.execute(select(t.c.client_id).where(t.c.name == name)).scalar()
        if client_id is None:
            raise UsageError(f"no app named {name!r}", code=NOT_FOUND)
        conn.execute(delete(t).where(t.c.name == name))
    return str(client_id)


def list_apps(store: AgentStore) -> list[App]:
    """Every registered app, by name."""
    with store.raw() as conn:
        rows = conn.execute(
            "SELECT name, client_id, patterns, created_at FROM apps ORDER BY name"
        ).fetchall()
    return [App(r[0], r[1], tuple(json.loads(r[2])), r[3]) for r in rows]


def authenticate(store: AgentStore, client_id: str, client_secret: str) -> App | None:
    """The app whose credentials these are, or ``None``; compares in constant time and does the
    same work for an unknown ``client_id``."""
    with store.raw() as conn:
        row = conn.execute(
            "SELECT name, client_id, secret_sha256, patterns, created_at FROM apps "
            "WHERE client_id = ?",
            (client_id,),
        ).fetchone()
    expected = bytes(row[2]) if row is not None else _DUMMY_HASH
    if not hmac.compare_digest(expected, hash_secret(client_secret)) or row is None:
        return None
    return App(row[0], row[1], tuple(json.loads(row[3])), row[4])
