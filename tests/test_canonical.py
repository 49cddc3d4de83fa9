"""Canonical JSON: one encoding per value, and every bad input is a ``ValueError``."""

import pytest

from relay.canonical import canonical_json, parse_canonical


def test_round_trip_is_sorted_compact_ascii() -> None:
    value = {"b": [1, "é"], "a": None}
    data = canonical_json(value)
    assert data == b'{"a":null,"b":[1,"\\u00e9"]}'
    assert parse_canonical(data) == value


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1}',  # insignificant space
        b'{"b":1,"a":2}',  # unsorted keys
        b'{"a":1,"a":1}',  # duplicate key
        b'{"a":1.0}',  # float
        b'{"a":NaN}',  # not JSON
        b'{"a":-0}',  # two spellings of zero
        b'{"a":"\\u0041"}',  # escape where none is needed
        b'{"a":"\xc3\xa9"}',  # raw non-ASCII
        b"",
    ],
)
def test_non_canonical_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_canonical(data)


def test_deep_nesting_is_a_value_error_not_a_crash() -> None:
    """Regression: 5000 ``[`` raised RecursionError, which escaped the verifier uncaught."""
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_canonical(b"[" * 5000 + b"]" * 5000)
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_canonical(b"[" * 5000)


def test_floats_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="floats"):
        canonical_json({"a": [1.5]})
