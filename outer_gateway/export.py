"""Export: build one sealed, signed secrets bundle per agent from the gateway's store: a delta
on the newest bundle the agent acknowledged, or its full state (spec §8.3)."""

from __future__ import annotations

import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from outer_gateway.delta import Base, Row, choose_base, delta_rows, read_mark, record_export
from outer_gateway.online_key import online_keys
from outer_gateway.policies import shipped_policies
from outer_gateway.store import Agent, GatewayStore
from outer_gateway.versions import granted_versions
from relay import crashpoint
from relay.bundle.envelope import BundleBase, parse_envelope
from relay.bundle.payload import SecretsPayload
from relay.bundle.seal import bundle_file_name, seal_bundle
from relay.bundle.versions import VersionRow
from relay.db import fetch_all
from relay.errors import TOO_LARGE, UsageError
from relay.home import Home
from relay.paths import grant_matcher

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

# Prefix, header (under 1 KiB with our names), signature, nonce and MAC around the plaintext.
ENVELOPE_ALLOWANCE = 2048


@dataclass(frozen=True)
class ExportedBundle:
    """One bundle ready to be written."""

    agent: str
    name: str
    data: bytes
    seq: int
    secrets: int
    tombstones: int
    bundle_id: str = ""
    base_seq: int | None = None  # a delta's base (spec §8.3); None for a full bundle


def agents_to_export(store: GatewayStore, only: str | None) -> list[Agent]:
    """The named agent, or every agent that has at least one grant."""
    from outer_gateway.agent_keys import check_not_revoked, revoked_agents

    if only is not None:
        check_not_revoked(store, only)
        return [store.agent(only)]
    granted = {agent for agent, _ in store.grants()}
    revoked = revoked_agents(store)
    return [
        a for a in store.agents() if a.identity.name in granted and a.identity.name not in revoked
    ]


def build_bundle(
    home: Home,
    store: GatewayStore,
    agent: Agent,
    now: int,
    valid_for: int,
    audit_ack: int = 0,
    on_sealed: Callable[[Connection, ExportedBundle], None] | None = None,
    full: bool = False,
) -> ExportedBundle:
    """The secrets bundle for ``agent``: a delta on the newest bundle it acknowledged (spec
    §8.3, :mod:`outer_gateway.delta`), or its full granted state with tombstones when no base
    is known, every ``export.full_every`` bundles, or when ``full`` asks for it.

    The seq is reserved, the bundle sealed, remembered as a possible base and ``on_sealed`` run
    (the export's audit record) in one transaction: a seq is committed only together with the
    one bundle it was sealed into, and always before that bundle is written anywhere."""
    name = agent.identity.name
    from outer_gateway.agent_keys import check_not_revoked

    check_not_revoked(store, name)  # never seal to a revoked agent, whoever asks
    patterns = tuple(sorted({pattern for _, pattern in store.grants(name)}))
    content = _content(home, store, agent, patterns, now, full, audit_ack)
    plaintext = content.payload.encode()
    cap = int(home.config.get("limits.max_bundle_bytes"))
    if len(plaintext) + ENVELOPE_ALLOWANCE > cap:  # refuse before a seq is spent
        raise UsageError(
            f"the bundle for {name} would be over limits.max_bundle_bytes ({cap})", code=TOO_LARGE
        )
    trust = _trust_section(home, now)
    base = content.base
    sender, keys = online_keys(home)  # identity.key's, or a PKCS#11 token's (online_key.py)
    with store.reserve_seq(name, now) as (conn, seq):
        data = seal_bundle(
            kind="secrets",
            sender=sender,
            keys=keys,
            recipient=agent.identity,
            seq=seq,
            created=now,
            expires=now + valid_for,
            plaintext=plaintext,
            trust=trust,
            base=None if base is None else BundleBase(base.bundle_id, base.seq),
        )
        if len(data) > cap:  # never written, so the seq is not spent (rolled back)
            raise UsageError(
                f"the bundle for {name} is over limits.max_bundle_bytes", code=TOO_LARGE
            )
        envelope = parse_envelope(data)
        bundle = ExportedBundle(
            name,
            bundle_file_name(envelope.header),
            data,
            seq,
            len(content.payload.secrets),
            len(content.payload.tombstones),
            envelope.bundle_id,
            None if base is None else base.seq,
        )
        record_export(conn, name, seq, bundle.bundle_id, content.mark, patterns, base is None, now)
        if on_sealed is not None:
            on_sealed(conn, bundle)
        crashpoint.reached("export.sealed")
    crashpoint.reached("export.committed")
    return bundle


@dataclass(frozen=True)
class _Content:
    payload: SecretsPayload
    base: Base | None
    mark: int  # the change clock, read before any row


def _content(
    home: Home,
    store: GatewayStore,
    agent: Agent,
    patterns: tuple[str, ...],
    now: int,
    full: bool,
    audit_ack: int = 0,
) -> _Content:
    """What the bundle for ``agent`` carries: a delta when an acknowledged base allows it."""
    matcher = grant_matcher(list(patterns))
    full_every = int(home.config.get("export.full_every"))
    with store.engine.connect() as conn:
        mark = read_mark(conn)
        base = None
        if not full and matcher is not None:
            next_seq = agent.last_seq + 1
            base = choose_base(conn, agent.identity.name, next_seq, patterns, full_every)
        versions: list[VersionRow] = []
        if matcher is not None:
            versions = granted_versions(store, matcher.fullmatch, now)
        staged = {row[0] for row in versions if row[1] == "pending"}
        rows = _delta(store, conn, base, patterns, versions) if base is not None else None
    if rows is None:  # full state
        base = None
        granted = None if matcher is None else matcher.fullmatch
        rows = [] if granted is None else [r for r in store.all_rows() if granted(r[0])]
    secrets, tombstones = _split(rows, staged)
    if base is None:
        policies = shipped_policies(store, [row[0] for row in secrets] + list(staged))
    else:
        policies = _delta_policies(store, patterns, staged)
    payload = SecretsPayload(
        secrets, tombstones, audit_ack, versions, policies, delta=base is not None
    )
    return _Content(payload, base, mark)


def _delta(
    store: GatewayStore,
    conn: Connection,
    base: Base,
    patterns: tuple[str, ...],
    versions: list[VersionRow],
) -> list[Row] | None:
    """The rows of a delta on ``base``, or ``None`` when only full state can say it (see
    :func:`delta_rows`), or when a removed path keeps a pending version (the agent must drop its
    current row and keep the pending one, and a delta's removal would drop both)."""
    rows = delta_rows(store, conn, base, patterns, {row[0] for row in versions})
    staged = {row[0] for row in versions if row[1] == "pending"}
    if rows is None or any(row[4] and row[0] in staged for row in rows):
        return None
    return rows


def _split(
    rows: list[Row], staged: set[str]
) -> tuple[list[tuple[str, int, str, int | None]], list[tuple[str, int]]]:
    """Live rows as payload secrets (base64 values), removed ones as tombstones (except where a
    pending version brings the path back)."""
    secrets: list[tuple[str, int, str, int | None]] = []
    tombstones: list[tuple[str, int]] = []
    b64 = binascii.b2a_base64
    for path, version, value, expires_at, deleted in rows:
        if deleted or value is None:
            if path not in staged:
                tombstones.append((path, version))
        else:
            secrets.append((path, version, b64(value, newline=False).decode(), expires_at))
    return secrets, tombstones


def _delta_policies(
    store: GatewayStore, patterns: tuple[str, ...], staged: set[str]
) -> list[tuple[str, int | None, bool]]:
    """A delta carries the freshness rules of every granted path, like a full bundle (the agent
    replaces its rules with each bundle's); the paths are read only when a rule exists."""
    from outer_gateway.policies import list_policies

    if not any(p.max_offline_age is not None or p.fail_closed for p in list_policies(store)):
        return []
    matcher = grant_matcher(list(patterns))
    if matcher is None:
        return []
    with store.engine.connect() as conn:
        live = fetch_all(conn, "SELECT path FROM secrets WHERE NOT deleted")
    paths = [path for (path,) in live if matcher.fullmatch(path) is not None]
    return shipped_policies(store, paths + sorted(staged))


def _trust_section(home: Home, now: int) -> dict[str, Any] | None:
    """The certificate chain bundles carry when the gateway has a root (spec §15)."""
    from outer_gateway.keyring import check_not_revoked, finish_rotation, load

    ring = load(home)
    if ring is None:
        return None
    finish_rotation(home, ring)  # a key rotation a crash interrupted
    check_not_revoked(ring)
    return ring.section(now)
