"""One read of the gateway's store for a whole export pass, and each agent's payload from it.

An export pass (``relay gateway run``, ``relay gateway export``) sends bundles to many agents
whose grants overlap. :class:`ExportView` reads the secrets, the labelled versions and the
rotation policies once, then answers per agent (given its grant patterns, which the pass reads
with each batch's claim) from memory:

- a grant pattern is resolved once per pass, to the rows it matches (``pattern -> rows``),
  looking only at the paths that share its literal prefix (a sorted list and a bisect), so the
  cost follows the rows granted, not agents times secrets;
- the policy governing a path is looked up once per path, whatever the number of agents.

The view holds opened values for the length of a pass only; it does no writing.
"""

from __future__ import annotations

import binascii
import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from outer_gateway.delta import read_mark
from outer_gateway.policies import Policy, list_policies, policy_for
from outer_gateway.store import GatewayStore
from outer_gateway.versions import PlainVersion, to_payload_row, version_rows
from relay.bundle.payload import encode_full_payload, encode_row
from relay.bundle.versions import VersionRow
from relay.db import fetch_all
from relay.paths import _compile

_WILDCARDS = "*?"
_ALL_ROWS = "SELECT path, version, value, expires_at, deleted FROM secrets"


@dataclass(frozen=True)
class AgentPayload:
    """The plaintext of one agent's full-state payload and what it holds."""

    plaintext: bytes
    secrets: int
    tombstones: int


class ExportView:
    """What every bundle of one pass is built from, read from the store once."""

    def __init__(self, store: GatewayStore, now: int) -> None:
        with store.engine.connect() as conn:
            self.mark = read_mark(conn)  # the change clock, before any row (a delta's base)
            # (path, version, stored value or None, expires_at, deleted), sorted by path
            self.rows = sorted(fetch_all(conn, _ALL_ROWS, binary=True))
        self.paths = [row[0] for row in self.rows]
        self._open = store.codec.open
        self._plain = store.codec.plain
        self._encoded: dict[int, str] = {}  # row index -> its payload row (JSON, value opened)
        self.versions: list[PlainVersion] = version_rows(store, now)
        self.version_paths = sorted({row[0] for row in self.versions})
        self.policies: list[Policy] = list_policies(store)
        self._matched: dict[str, tuple[int, ...]] = {}
        self._governing: dict[str, Policy | None] = {}

    def matched(self, pattern: str) -> tuple[int, ...]:
        """Indexes into :attr:`rows` of the paths ``pattern`` grants (cached for the pass)."""
        found = self._matched.get(pattern)
        if found is None:
            found = tuple(_match_sorted(pattern, self.paths))
            self._matched[pattern] = found
        return found

    def payload(self, patterns: Sequence[str], audit_ack: int) -> AgentPayload:
        """The full-state payload of an agent granted ``patterns``: the secrets and tombstones
        they grant, the labelled versions of the granted paths, and the freshness policies
        governing them."""
        indexes: set[int] = set()
        for pattern in patterns:
            indexes.update(self.matched(pattern))
        staged_versions = self._versions_for(patterns)
        staged = {row[0] for row in staged_versions if row[1] == "pending"}
        secrets: list[str] = []  # each row's JSON
        paths: list[str] = []
        tombstones: list[tuple[str, int]] = []
        rows, encoded = self.rows, self._encoded
        for index in sorted(indexes):
            path, version, value, expires_at, deleted = rows[index]
            if deleted or value is None:
                if path not in staged:  # a pending version brings a removed path back
                    tombstones.append((path, int(version)))
                continue
            text = encoded.get(index)
            if text is None:  # opened and encoded once per pass, by the first agent granted it
                text = self._encode(path, int(version), value, expires_at)
                encoded[index] = text
            secrets.append(text)
            paths.append(path)
        policies = self._shipped_policies(paths + sorted(staged))
        plaintext = encode_full_payload(secrets, tombstones, audit_ack, staged_versions, policies)
        return AgentPayload(plaintext, len(secrets), len(tombstones))

    def _encode(self, path: str, version: int, stored: bytes, expires_at: int | None) -> str:
        """The payload row of a live secret, as JSON (its value opened and in base64)."""
        value = bytes(stored) if self._plain else self._open(bytes(stored))
        text = binascii.b2a_base64(value, newline=False).decode()
        return encode_row((path, version, text, expires_at))

    def _versions_for(self, patterns: Sequence[str]) -> list[VersionRow]:
        if not self.versions or not patterns:
            return []
        granted: set[str] = set()
        for pattern in patterns:
            paths = self.version_paths
            granted.update(paths[i] for i in _match_sorted(pattern, paths))
        return [to_payload_row(row) for row in self.versions if row[0] in granted]

    def _shipped_policies(self, paths: list[str]) -> list[tuple[str, int | None, bool]]:
        """As :func:`outer_gateway.policies.shipped_policies`, from the pass's policies."""
        if not self.policies:
            return []
        governing = {self._policy(path) for path in paths}
        return [
            (p.pattern, p.max_offline_age, p.fail_closed)
            for p in self.policies
            if p in governing and (p.max_offline_age is not None or p.fail_closed)
        ]

    def _policy(self, path: str) -> Policy | None:
        if path not in self._governing:
            self._governing[path] = policy_for(self.policies, path)
        return self._governing[path]


def _match_sorted(pattern: str, paths: list[str]) -> list[int]:
    """Indexes of the ``paths`` (sorted, valid) that ``pattern`` grants: only the paths that
    start with the pattern's literal prefix (everything before its first wildcard) are tried,
    and the common shapes ``prefix/**`` and ``prefix*`` need no regex."""
    cut = min((i for i in (pattern.find(w) for w in _WILDCARDS) if i >= 0), default=len(pattern))
    prefix, rest = pattern[:cut], pattern[cut:]
    start = bisect.bisect_left(paths, prefix)
    if not rest:  # no wildcard: one path at most
        return [start] if start < len(paths) and paths[start] == pattern else []
    end = bisect.bisect_left(paths, prefix + "\U0010ffff", start)
    if rest == "**" and prefix.endswith("/"):  # everything under the prefix
        return list(range(start, end))
    if rest == "*":  # the rest of the last segment
        n = len(prefix)
        return [i for i in range(start, end) if "/" not in paths[i][n:]]
    match = _compile(pattern).match
    return [i for i in range(start, end) if match(paths[i]) is not None]
