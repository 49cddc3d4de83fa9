"""Canonical JSON: the one encoding relay signs and hashes.

Objects with sorted keys, no insignificant white space, ASCII only (``\\uXXXX`` escapes), integers
but no floats. A verifier re-encodes what it parsed and requires the same bytes, so two encodings
of one value can never both verify. Nesting too deep for the parser is refused like any bad input.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of ``value``; raises ``ValueError`` for floats or non-JSON values."""
    _refuse_floats(value)
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def parse_canonical(data: bytes) -> Any:
    """Parse ``data`` and require that it is canonical; raises ``ValueError`` otherwise."""
    text = data.decode("ascii")  # UnicodeDecodeError is a ValueError
    try:
        value = json.loads(text, parse_float=_no_float, parse_constant=_no_float)
        encoded = canonical_json(value)
    except RecursionError:  # deep nesting ("[[[[..."): bad data, not a crash
        raise ValueError("JSON nested too deeply") from None
    if encoded != data:
        raise ValueError("not canonical JSON")
    return value


def _no_float(text: str) -> Any:
    raise ValueError(f"floats are not allowed: {text}")


def _refuse_floats(value: Any) -> None:
    if isinstance(value, float):
        raise ValueError("floats are not allowed in canonical JSON")  # noqa: TRY004
    if isinstance(value, dict):
        for item in value.values():
            _refuse_floats(item)
    elif isinstance(value, list):
        for item in value:
            _refuse_floats(item)
