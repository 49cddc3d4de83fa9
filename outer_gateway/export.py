"""Export: build one sealed, signed secrets bundle per agent from the gateway's store: a delta
on the newest bundle the agent acknowledged, or its full state (spec §8.3).

The full state comes from an :class:`~outer_gateway.export_view.ExportView` (one read of the
store for a whole pass, ``relay gateway run``), made only when a full bundle is needed; a delta
reads only the rows changed since its base (:mod:`outer_gateway.delta`)."""

from __future__ import annotations

import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from outer_gateway.delta import (
    Base,
    Export,
    Row,
    choose_base,
    delta_rows,
    read_mark,
    record_exports,
)
from outer_gateway.export_view import ExportView
from outer_gateway.online_key import online_keys
from outer_gateway.policies import shipped_policies
from outer_gateway.store import Agent, GatewayStore
from outer_gateway.versions import granted_versions
from relay import crashpoint
from relay.bundle.envelope import BundleBase
from relay.bundle.payload import SecretsPayload
from relay.bundle.seal import bundle_file_name, seal_bundle_identified
from relay.bundle.versions import VersionRow
from relay.db import fetch_all, fetch_in
from relay.errors import TOO_LARGE, UsageError
from relay.home import Home
from relay.paths import grant_matcher

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

# Prefix, header (under 1 KiB with our names), signature, nonce and MAC around the plaintext.
ENVELOPE_ALLOWANCE = 2048

ViewOf = Callable[[], ExportView]


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


@dataclass(frozen=True)
class Content:
    """What one agent's bundle carries, before it is sealed."""

    plaintext: bytes
    secrets: int
    tombstones: int
    base: Base | None  # None: full state
    mark: int  # the change clock, read before any row the plaintext holds
    patterns: tuple[str, ...]  # the agent's grants


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


def view_once(store: GatewayStore, now: int) -> ViewOf:
    """An :class:`ExportView` made at its first use and kept for the pass (a pass of deltas
    never reads the whole store)."""
    made: list[ExportView] = []

    def view() -> ExportView:
        if not made:
            made.append(ExportView(store, now))
        return made[0]

    return view


def agent_content(
    home: Home,
    store: GatewayStore,
    conn: Connection,
    name: str,
    next_seq: int,
    now: int,
    audit_ack: int,
    view_of: ViewOf,
    full: bool = False,
) -> Content:
    """A delta on the newest base ``name`` acknowledged when one allows it (never with
    ``full``), else its full state from the pass's view. ``conn`` reads the export bases."""
    patterns = _patterns(conn, name)
    base = None
    if not full and patterns:
        full_every = int(home.config.get("export.full_every"))
        base = choose_base(conn, name, next_seq, patterns, full_every)
    return content_on(store, conn, name, now, audit_ack, view_of, patterns, base)


def content_on(
    store: GatewayStore,
    conn: Connection,
    name: str,
    now: int,
    audit_ack: int,
    view_of: ViewOf,
    patterns: tuple[str, ...],
    base: Base | None,
) -> Content:
    """:func:`agent_content` once the agent's grants and base are known (a pass reads them for
    a whole batch): a delta on ``base`` when it can say the change, else the full state."""
    if base is not None:
        mark = read_mark(conn)
        payload = _delta_payload(store, conn, base, patterns, now, audit_ack)
        if payload is not None:
            secrets, tombstones = len(payload.secrets), len(payload.tombstones)
            return Content(payload.encode(), secrets, tombstones, base, mark, patterns)
    view = view_of()
    full_state = view.payload(patterns, audit_ack)
    return Content(
        full_state.plaintext, full_state.secrets, full_state.tombstones, None, view.mark, patterns
    )


def build_bundle(
    home: Home,
    store: GatewayStore,
    agent: Agent,
    now: int,
    valid_for: int,
    audit_ack: int = 0,
    on_sealed: Callable[[Connection, ExportedBundle], None] | None = None,
    full: bool = False,
    view_of: ViewOf | None = None,
) -> ExportedBundle:
    """The secrets bundle for ``agent``: a delta on the newest bundle it acknowledged (spec
    §8.3, :mod:`outer_gateway.delta`), or its full granted state with tombstones when no base
    is known, every ``export.full_every`` bundles, or when ``full`` asks for it. ``view_of``:
    the pass's read of the store, when several bundles are built from one.

    The seq is reserved, the bundle sealed, remembered as a possible base and ``on_sealed`` run
    (the export's audit record) in one transaction: a seq is committed only together with the
    one bundle it was sealed into, and always before that bundle is written anywhere."""
    name = agent.identity.name
    from outer_gateway.agent_keys import check_not_revoked

    check_not_revoked(store, name)  # never seal to a revoked agent, whoever asks
    if view_of is None:
        view_of = view_once(store, now)
    with store.engine.connect() as conn:
        content = agent_content(
            home, store, conn, name, agent.last_seq + 1, now, audit_ack, view_of, full
        )
    cap = int(home.config.get("limits.max_bundle_bytes"))
    if len(content.plaintext) + ENVELOPE_ALLOWANCE > cap:  # refuse before a seq is spent
        raise UsageError(
            f"the bundle for {name} would be over limits.max_bundle_bytes ({cap})", code=TOO_LARGE
        )
    trust = trust_section(home, now)
    sender, keys = online_keys(home)  # identity.key's, or a PKCS#11 token's (online_key.py)
    with store.reserve_seq(name, now) as (conn, seq):
        bundle = seal_content(sender, keys, agent.identity, content, seq, now, valid_for, trust)
        if len(bundle.data) > cap:  # never written, so the seq is not spent (rolled back)
            raise UsageError(
                f"the bundle for {name} is over limits.max_bundle_bytes", code=TOO_LARGE
            )
        remember(conn, bundle, content, now)
        if on_sealed is not None:
            on_sealed(conn, bundle)
        crashpoint.reached("export.sealed")
    crashpoint.reached("export.committed")
    return bundle


def seal_content(
    sender: Any,
    keys: Any,
    recipient: Any,
    content: Content,
    seq: int,
    now: int,
    valid_for: int,
    trust: dict[str, Any] | None,
) -> ExportedBundle:
    """Seal ``content`` to ``recipient`` as bundle ``seq`` (its base, if a delta, signed in the
    header)."""
    base = content.base
    data, header, bundle_id = seal_bundle_identified(
        kind="secrets",
        sender=sender,
        keys=keys,
        recipient=recipient,
        seq=seq,
        created=now,
        expires=now + valid_for,
        plaintext=content.plaintext,
        trust=trust,
        base=None if base is None else BundleBase(base.bundle_id, base.seq),
    )
    return ExportedBundle(
        recipient.name,
        bundle_file_name(header),
        data,
        seq,
        content.secrets,
        content.tombstones,
        bundle_id,
        None if base is None else base.seq,
    )


def remember(conn: Connection, bundle: ExportedBundle, content: Content, now: int) -> None:
    """Record ``bundle`` as a possible base of later deltas (in its seq's transaction)."""
    record_exports(conn, [exported(bundle, content)], now)


def exported(bundle: ExportedBundle, content: Content) -> Export:
    """What :func:`remember` records of ``bundle`` (a pass records a batch at once)."""
    return Export(
        bundle.agent,
        bundle.seq,
        bundle.bundle_id,
        content.mark,
        content.patterns,
        content.base is None,
    )


def _patterns(conn: Connection, name: str) -> tuple[str, ...]:
    return grant_patterns(conn, [name])[name]


def grant_patterns(conn: Connection, names: list[str]) -> dict[str, tuple[str, ...]]:
    """Each agent's grant patterns, sorted and without repeats (one query per 500 agents)."""
    found: dict[str, set[str]] = {name: set() for name in names}
    for agent, pattern in fetch_in(
        conn, "SELECT agent, pattern FROM grants WHERE {where}", "agent", names
    ):
        found[str(agent)].add(str(pattern))
    return {name: tuple(sorted(patterns)) for name, patterns in found.items()}


def _delta_payload(
    store: GatewayStore,
    conn: Connection,
    base: Base,
    patterns: tuple[str, ...],
    now: int,
    audit_ack: int,
) -> SecretsPayload | None:
    """The delta payload on ``base``, or ``None`` when only full state can say it."""
    matcher = grant_matcher(list(patterns))
    if matcher is None:
        return None
    versions: list[VersionRow] = granted_versions(store, matcher.fullmatch, now)
    staged = {row[0] for row in versions if row[1] == "pending"}
    rows = _delta(store, conn, base, patterns, versions)
    if rows is None:
        return None
    secrets, tombstones = _split(rows, staged)
    policies = _delta_policies(store, patterns, staged)
    return SecretsPayload(secrets, tombstones, audit_ack, versions, policies, delta=True)


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


def trust_section(home: Home, now: int) -> dict[str, Any] | None:
    """The certificate chain bundles carry when the gateway has a root (spec §15)."""
    from outer_gateway.keyring import check_not_revoked, finish_rotation, load

    ring = load(home)
    if ring is None:
        return None
    finish_rotation(home, ring)  # a key rotation a crash interrupted
    check_not_revoked(ring)
    return ring.section(now)
