"""The agent's memory of its gateway's root (spec §15): pinning, reading back, remembering.

- :func:`pin_root`: ``relay agent trust`` with a root identity file (the one visit).
- :func:`root_state`: the :class:`~relay.trust.chain.RootState` the verifier judges against.
- :func:`remember_chain`: inside the apply transaction, the roots and revocations a verified
  bundle taught, and its certified key as the gateway's current online identity (the key the
  return stream is sealed to).
"""

from __future__ import annotations

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from inner_agent import schema
from relay.codes import ALREADY_TRUSTED
from relay.db import write_transaction
from relay.errors import UsageError
from relay.identity import PublicIdentity
from relay.trust.chain import ChainResult, RootState
from relay.trust.documents import Cert, Root, root_key_id

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
        trusted = conn.execute(select(schema.trusted.c.key_id)).first()
        if (pinned or trusted is not None) and not replace:
            raise UsageError(
                "this agent already trusts another gateway; pass --replace to change it",
                code=ALREADY_TRUSTED,
            )
        # A re-pin (the visit after a stolen root) starts a new stream: whoever held the old
        # root may have pushed the old stream's high-water mark out of reach.
        for table in (schema.gateway_roots, schema.revoked_keys, schema.trusted):
            conn.execute(delete(table))
        conn.execute(
            insert(schema.gateway_roots).values(
                version=root.version, gateway=root.gateway, root_key=root.key, accepted_at=now
            )
        )
        _set_meta(conn, ANCHOR_KEY, root_key_id(root.key))
        _pin_signer(conn, signer, cert.serial, now)
    return True


def root_state(engine: Engine) -> RootState | None:
    """The pinned root state, or ``None`` when this agent pins a gateway key directly."""
    with engine.connect() as conn:
        roots = _roots(conn)
        if not roots:
            return None
        t = schema.revoked_keys
        revoked = {str(r[0]): int(r[1]) for r in conn.execute(select(t.c.key_id, t.c.serial))}
        anchor = _get_meta(conn, ANCHOR_KEY) or ""
        gateway = (
            conn.execute(
                select(schema.gateway_roots.c.gateway).order_by(
                    schema.gateway_roots.c.version.desc()
                )
            )
            .scalars()
            .first()
        )
    version, key = roots[-1]
    return RootState(str(gateway), version, key, frozenset(k for _, k in roots), revoked, anchor)


def remember_chain(conn: Connection, chain: ChainResult, now: int) -> None:
    """Persist what a verified, applied bundle's chain taught (same transaction as the apply)."""
    for root in chain.new_roots:
        conn.execute(
            insert(schema.gateway_roots).values(
                version=root.version, gateway=root.gateway, root_key=root.key, accepted_at=now
            )
        )
    t = schema.revoked_keys
    held = {str(r[0]): int(r[1]) for r in conn.execute(select(t.c.key_id, t.c.serial))}
    for key_id, serial in chain.revoked.items():
        if key_id not in held:
            conn.execute(insert(t).values(key_id=key_id, serial=serial, received_at=now))
        elif serial > held[key_id]:
            conn.execute(update(t).where(t.c.key_id == key_id).values(serial=serial))
    current = int(_get_meta(conn, CERT_SERIAL_KEY) or 0)
    if chain.cert.serial > current:
        conn.execute(delete(schema.trusted))
        _pin_signer(conn, chain.signer, chain.cert.serial, now)


def _pin_signer(conn: Connection, signer: PublicIdentity, serial: int, now: int) -> None:
    conn.execute(
        insert(schema.trusted).values(
            key_id=signer.key_id,
            role=signer.role,
            name=signer.name,
            sign_public=signer.sign_public,
            box_public=signer.box_public,
            added_at=now,
        )
    )
    _set_meta(conn, CERT_SERIAL_KEY, str(serial))


def _roots(conn: Connection) -> list[tuple[int, bytes]]:
    t = schema.gateway_roots
    rows = conn.execute(select(t.c.version, t.c.root_key).order_by(t.c.version)).all()
    return [(int(r.version), bytes(r.root_key)) for r in rows]


def _get_meta(conn: Connection, key: str) -> str | None:
    value = conn.execute(
        select(schema.meta.c.value).where(schema.meta.c.key == key)
    ).scalar_one_or_none()
    return None if value is None else str(value)


def _set_meta(conn: Connection, key: str, value: str) -> None:
    done = conn.execute(update(schema.meta).where(schema.meta.c.key == key).values(value=value))
    if done.rowcount == 0:
        conn.execute(insert(schema.meta).values(key=key, value=value))
