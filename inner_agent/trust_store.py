"""The agent's memory of its gateway's root (spec §15): pinning, reading back, remembering.

- :func:`pin_root`: ``relay agent trust`` with a root identity file (the one visit).
- :func:`root_state`: the :class:`~relay.trust.chain.RootState` the verifier judges against.
- :func:`remember_chain`: inside the apply transaction, the roots and revocations a verified
  bundle taught, and its certified key as the gateway's current online identity (the key the
  return stream is sealed to).

The SQL is plain (``?`` placeholders through :func:`relay.db.fetch_all` and
:func:`relay.db.bulk_execute`), so each function runs on a SQLAlchemy connection or on the raw
SQLCipher connection of the agent's receive transaction (docs/adr/0018-lean-agent.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relay.codes import ALREADY_TRUSTED
from relay.db import bulk_execute, fetch_all, write_transaction
from relay.errors import UsageError
from relay.identity import PublicIdentity
from relay.trust.chain import ChainResult, RootState
from relay.trust.documents import Cert, Root, root_key_id

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

ANCHOR_KEY = "root_anchor"
CERT_SERIAL_KEY = "cert_serial"


def pin_root(
    engine: Engine, root: Root, cert: Cert, signer: PublicIdentity, now: int, replace: bool
) -> bool:
    """Pin ``root`` (already self-verified, ``cert`` checked against it); True if new."""
    with write_transaction(engine) as conn:
        pinned = _roots(conn)
        if pinned and pinned[-1][1] == root.key:
            return False
        trusted = fetch_all(conn, "SELECT key_id FROM trusted")
        if (pinned or trusted) and not replace:
            raise UsageError(
                "this agent already trusts another gateway; pass --replace to change it",
                code=ALREADY_TRUSTED,
            )
        # A re-pin (the visit after a stolen root) starts a new stream: whoever held the old
        # root may have pushed the old stream's high-water mark out of reach.
        for table in ("gateway_roots", "revoked_keys", "trusted"):
            bulk_execute(conn, f"DELETE FROM {table}", [()])  # noqa: S608 - fixed names
        _add_root(conn, root, now)
        _set_meta(conn, ANCHOR_KEY, root_key_id(root.key))
        _pin_signer(conn, signer, cert.serial, now)
    return True


def root_state(engine: Engine) -> RootState | None:
    """The pinned root state, or ``None`` when this agent pins a gateway key directly."""
    with engine.connect() as conn:
        return root_state_on(conn)


def root_state_on(conn: Connection | Any) -> RootState | None:
    """:func:`root_state` on an open connection (SQLAlchemy or raw)."""
    roots = _roots(conn)
    if not roots:
        return None
    revoked = {str(r[0]): int(r[1]) for r in fetch_all(conn, _REVOKED)}
    anchor = _get_meta(conn, ANCHOR_KEY) or ""
    newest = fetch_all(conn, "SELECT gateway FROM gateway_roots ORDER BY version DESC LIMIT 1")
    version, key = roots[-1]
    known = frozenset(k for _, k in roots)
    return RootState(str(newest[0][0]), version, key, known, revoked, anchor)


_REVOKED = "SELECT key_id, serial FROM revoked_keys"


def remember_chain(conn: Connection | Any, chain: ChainResult, now: int) -> None:
    """Persist what a verified, applied bundle's chain taught (same transaction as the apply)."""
    for root in chain.new_roots:
        _add_root(conn, root, now)
    held = {str(r[0]): int(r[1]) for r in fetch_all(conn, _REVOKED)}
    for key_id, serial in chain.revoked.items():
        if key_id not in held:
            bulk_execute(
                conn,
                "INSERT INTO revoked_keys (key_id, serial, received_at) VALUES (?, ?, ?)",
                [(key_id, serial, now)],
            )
        elif serial > held[key_id]:
            bulk_execute(
                conn, "UPDATE revoked_keys SET serial = ? WHERE key_id = ?", [(serial, key_id)]
            )
    current = int(_get_meta(conn, CERT_SERIAL_KEY) or 0)
    if chain.cert.serial > current:
        bulk_execute(conn, "DELETE FROM trusted", [()])
        _pin_signer(conn, chain.signer, chain.cert.serial, now)


def _add_root(conn: Connection | Any, root: Root, now: int) -> None:
    bulk_execute(
        conn,
        "INSERT INTO gateway_roots (version, gateway, root_key, accepted_at) VALUES (?, ?, ?, ?)",
        [(root.version, root.gateway, root.key, now)],
    )


def _pin_signer(conn: Connection | Any, signer: PublicIdentity, serial: int, now: int) -> None:
    bulk_execute(
        conn,
        "INSERT INTO trusted (key_id, role, name, sign_public, box_public, added_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(signer.key_id, signer.role, signer.name, signer.sign_public, signer.box_public, now)],
    )
    _set_meta(conn, CERT_SERIAL_KEY, str(serial))


def _roots(conn: Connection | Any) -> list[tuple[int, bytes]]:
    rows = fetch_all(conn, "SELECT version, root_key FROM gateway_roots ORDER BY version")
    return [(int(r[0]), bytes(r[1])) for r in rows]


def _get_meta(conn: Connection | Any, key: str) -> str | None:
    rows = fetch_all(conn, "SELECT value FROM meta WHERE key = ?", (key,))
    return None if not rows else str(rows[0][0])


def _set_meta(conn: Connection | Any, key: str, value: str) -> None:
    bulk_execute(conn, SET_META, [(key, value)])


# One statement for "set this meta key" (SQLite's upsert), on either kind of connection.
SET_META = (
    "INSERT INTO meta (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
