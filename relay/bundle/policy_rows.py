"""Freshness policies in the secret stream: the optional ``freshness`` member of the payload.

    "freshness": [[PATTERN, MAX_OFFLINE_AGE_OR_NULL, FAIL_CLOSED], ...]

The gateway ships the rotation policies that set ``--max-offline-age`` or ``--fail-closed`` and
govern at least one path granted to the recipient. The agent refuses a secret that matches a
policy with ``FAIL_CLOSED`` true when its newest bundle is older than ``MAX_OFFLINE_AGE`` (or its
own ``agent.max_staleness`` when the policy sets no age). The most specific (longest) matching
pattern decides. Pure: rows in, validated rows out, ``malformed`` otherwise.
"""

from __future__ import annotations

from typing import Any

from relay.errors import MALFORMED, BundleRejected
from relay.paths import matches_any

MAX_INT = 2**53 - 1
PolicyRow = tuple[str, int | None, bool]


def decode_policy_rows(raw: Any, max_entries: int) -> list[PolicyRow]:
    """Validate the ``policies`` member."""
    if not isinstance(raw, list) or len(raw) > max_entries:
        raise _malformed("freshness is not an array within the entry cap")
    rows = [_row(item) for item in raw]
    if len({r[0] for r in rows}) != len(rows):
        raise _malformed("a policy pattern appears twice")
    return rows


def governing(rows: list[PolicyRow], path: str) -> PolicyRow | None:
    """The most specific row whose pattern matches ``path``."""
    matching = [r for r in rows if matches_any([r[0]], path)]
    return max(matching, key=lambda r: (len(r[0]), r[0]), default=None)


def _row(item: Any) -> PolicyRow:
    from relay.errors import UsageError
    from relay.paths import check_pattern

    if not (isinstance(item, list) and len(item) == 3):
        raise _malformed("a policy row is not [pattern, max_offline_age, fail_closed]")
    pattern, age, fail_closed = item
    if not isinstance(pattern, str):
        raise _malformed("a policy row has a bad pattern")
    try:
        check_pattern(pattern)
    except UsageError:
        raise _malformed("a policy row has a bad pattern") from None
    if age is not None and not (type(age) is int and 1 <= age <= MAX_INT):
        raise _malformed("a policy row has a bad max_offline_age")
    if type(fail_closed) is not bool:
        raise _malformed("a policy row has a bad fail_closed")
    return (pattern, age, fail_closed)


def _malformed(message: str) -> BundleRejected:
    return BundleRejected(message, code=MALFORMED)
