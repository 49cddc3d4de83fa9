"""The hop's memory of the gateway roots it trusts (spec §15), one gateway or several.

The same judgement as the agent's (:mod:`inner_agent.trust_store`), per gateway name: the pure
:func:`relay.trust.chain.verify_chain` decides, this module only pins and remembers.

- :func:`pin_root`: ``relay hop --trust`` with a gateway root identity file.
- :func:`root_states`: a :class:`~relay.trust.chain.RootState` per trusted gateway.
- :func:`remember_chain`: inside the transaction that records a forwarded bundle, the roots and
  revocations it taught and its certified online key.
- :func:`certified_senders`: the newest certified, unrevoked online key of each gateway (only
  used to skip a file whose verified head names a bundle already forwarded).
"""

from __future__ import annotations

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from relay.codes import ALREADY_TRUSTED
from relay.db import write_transaction
from relay.errors import UsageError
from relay.hop.store import certified, gateway_roots, pinned, revoked_keys
from relay.identity import PublicIdentity
from relay.trust.chain import ChainResult, RootState
from relay.trust.documents import Cert, Root


def pin_root(engine: Engine, root: Root, cert: Cert, now: int, replace: bool) -> bool:
    """Pin ``root`` (self-verified, ``cert`` checked against it) for its gateway; True if new.

    A root this hop already accepted for the gateway (the identity file given at enrollment,
    still passed on every run after rotations) changes nothing. Another root is refused unless
    ``replace`` (the visit after a stolen root), which forgets the gateway's roots,
    revocations and keys. Keys of the gateway pinned before its root are dropped: the root
    decides from now on."""
    with write_transaction(engine) as conn:
        known = {key for _, key in _roots(conn, root.gateway)}
        if root.key in known:
            return False
        if known and not replace:
            raise UsageError(
                f"this hop already trusts another root of gateway {root.gateway}; "
                "pass --replace to change it",
                code=ALREADY_TRUSTED,
            )
        for table in (gateway_roots, revoked_keys, certified):
            conn.execute(delete(table).where(table.c.gateway == root.gateway))
        conn.execute(
            delete(pinned).where(pinned.c.role == "gateway", pinned.c.name == root.gateway)
        )
        conn.execute(
            insert(gateway_roots).values(
                gateway=root.gateway, version=root.version, root_key=root.key, accepted_at=now
            )
        )
        _certify(conn, root.gateway, cert)
    return True


def rooted(engine: Engine, gateway: str) -> bool:
    """Whether ``gateway`` is trusted by its root here."""
    with engine.connect() as conn:
        return bool(_roots(conn, gateway))


def root_states(engine: Engine) -> dict[str, RootState]:
    """What the hop trusts of each rooted gateway."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                gateway_roots.c.gateway, gateway_roots.c.version, gateway_roots.c.root_key
            ).order_by(gateway_roots.c.gateway, gateway_roots.c.version)
        ).all()
        revoked = conn.execute(
            select(revoked_keys.c.gateway, revoked_keys.c.key_id, revoked_keys.c.serial)
        ).all()
    chains: dict[str, list[tuple[int, bytes]]] = {}
    for row in rows:
        chains.setdefault(str(row.gateway), []).append((int(row.version), bytes(row.root_key)))
    held: dict[str, dict[str, int]] = {}
    for row in revoked:
        held.setdefault(str(row.gateway), {})[str(row.key_id)] = int(row.serial)
    return {
        gateway: RootState(
            gateway,
            chain[-1][0],
            chain[-1][1],
            frozenset(key for _, key in chain),
            held.get(gateway, {}),
        )
        for gateway, chain in chains.items()
    }


def certified_senders(engine: Engine) -> dict[str, PublicIdentity]:
    """The newest certified online key of each rooted gateway, unless revoked (key id ->)."""
    states = root_states(engine)
    with engine.connect() as conn:
        rows = conn.execute(select(certified)).all()
    senders = {}
    for row in rows:
        state = states.get(str(row.gateway))
        if state is None or state.revoked.get(str(row.key_id), 0) >= int(row.serial):
            continue
        identity = PublicIdentity(
            "gateway", str(row.gateway), bytes(row.sign_public), bytes(row.box_public)
        )
        senders[identity.key_id] = identity
    return senders


def remember_chain(conn: Connection, chain: ChainResult, now: int) -> None:
    """Persist what a verified, forwarded bundle's chain taught (the caller's transaction)."""
    gateway = chain.cert.gateway
    for root in chain.new_roots:
        conn.execute(
            insert(gateway_roots).values(
                gateway=gateway, version=root.version, root_key=root.key, accepted_at=now
            )
        )
    t = revoked_keys
    rows = conn.execute(select(t.c.key_id, t.c.serial).where(t.c.gateway == gateway)).all()
    held = {str(r.key_id): int(r.serial) for r in rows}
    for key_id, serial in chain.revoked.items():
        if key_id not in held:
            conn.execute(
                insert(t).values(gateway=gateway, key_id=key_id, serial=serial, received_at=now)
            )
        elif serial > held[key_id]:
            conn.execute(
                update(t).where(t.c.gateway == gateway, t.c.key_id == key_id).values(serial=serial)
            )
    _certify(conn, gateway, chain.cert)


def _certify(conn: Connection, gateway: str, cert: Cert) -> None:
    """Remember ``cert``'s key as the gateway's online key when it is newer than the one held."""
    held = conn.execute(
        select(certified.c.serial).where(certified.c.gateway == gateway)
    ).scalar_one_or_none()
    if held is not None and int(held) >= cert.serial:
        return
    conn.execute(delete(certified).where(certified.c.gateway == gateway))
    conn.execute(
        insert(certified).values(
            gateway=gateway,
            serial=cert.serial,
            key_id=cert.key_id,
            sign_public=cert.sign_public,
            box_public=cert.box_public,
        )
    )


def _roots(conn: Connection, gateway: str) -> list[tuple[int, bytes]]:
    t = gateway_roots
    rows = conn.execute(
        select(t.c.version, t.c.root_key).where(t.c.gateway == gateway).order_by(t.c.version)
    ).all()
    return [(int(r.version), bytes(r.root_key)) for r in rows]
