"""The reason-code registry: every code raised anywhere is registered and documented, and the
CLI and the API take their statuses from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay import codes, reasons
from relay.errors import (
    ApiError,
    BundleDuplicate,
    RelayError,
    SecretError,
    TransportError,
    UsageError,
)
from tests.conftest import run_relay
from tests.reason_scan import ROOT, Use, uses_in, uses_in_package_sources

DOCS = ROOT / "docs" / "reason-codes.md"


@pytest.fixture(scope="module")
def uses() -> list[Use]:
    return uses_in_package_sources()


def test_the_scan_finds_the_codes_it_must(uses: list[Use]) -> None:
    found = {u.code for u in uses}
    # A literal class attribute, a constant by name, an API call: each kind is seen.
    assert {"bad_packet", "chain_broken", "host_key_unknown", "unauthorized"} <= found
    assert len(found) > 60


def test_every_code_used_in_the_source_is_registered(uses: list[Use]) -> None:
    missing = sorted(f"{u.where}: {u.code}" for u in uses if not reasons.is_registered(u.code))
    assert missing == []


def test_codes_are_raised_by_their_constants_not_as_literals(uses: list[Use]) -> None:
    """One spelling of each code, in relay/codes.py: a typo in a literal would be a new code."""
    assert sorted(f"{u.where}: {u.code!r}" for u in uses if u.literal) == []


def test_a_literal_code_is_told_apart_from_a_constant() -> None:
    found = uses_in(
        "raise UsageError('x', code='odd_kw')\nraise UsageError('x', code=ODD)\n",
        "snippet",
        {"ODD": "odd_name"},
    )
    assert [(u.code, u.literal) for u in found] == [("odd_kw", True), ("odd_name", False)]


def test_every_api_status_matches_the_registry(uses: list[Use]) -> None:
    wrong = [
        f"{u.where}: {u.code} given {u.status}, registered {reasons.http_status_of(u.code)}"
        for u in uses
        if u.status is not None and u.status != reasons.http_status_of(u.code)
    ]
    assert wrong == []


def test_an_unregistered_code_is_caught() -> None:
    source = (
        "class Odd(RelayError):\n    code = 'odd_class'\n"
        "raise UsageError('x', code='odd_kw')\n"
        "raise ApiError(418, 'odd_api', 'x')\n"
        "raise UsageError('x', code=ODD)\n"
    )
    found = uses_in(source, "snippet", {"ODD": "odd_name"})
    assert {u.code for u in found} == {"odd_class", "odd_kw", "odd_api", "odd_name"}
    assert not any(reasons.is_registered(u.code) for u in found)
    assert [u.status for u in found if u.code == "odd_api"] == [418]


def test_the_docs_table_is_generated_from_the_registry() -> None:
    assert DOCS.read_text(encoding="utf-8") == reasons.render_table(), (
        "regenerate: python -m relay.reasons > docs/reason-codes.md"
    )


def test_every_registered_code_is_in_the_docs() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert [r.code for r in reasons.all_reasons() if f"| `{r.code}` |" not in text] == []


def test_registering_a_code_twice_differently_is_refused() -> None:
    assert reasons.reason("malformed", reasons.lookup("malformed").meaning, area=codes.BUNDLE)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="registered twice"):
        reasons.reason("malformed", "something else", area=codes.BUNDLE)
    with pytest.raises(ValueError, match="lower_snake_case"):
        reasons.reason("Bad-Code", "x")


def test_errors_take_their_statuses_from_the_registry() -> None:
    assert UsageError("x", code=codes.BAD_VALUE).exit_status == 2
    assert UsageError("x", code=codes.NOT_FOUND).exit_status == 2  # the request was invalid
    assert SecretError("x", code=codes.NOT_FOUND).exit_status == 1
    assert TransportError("x", code=codes.HOST_KEY_UNKNOWN).exit_status == 3
    assert BundleDuplicate("x").exit_status == 0
    assert RelayError("x", code=codes.CHAIN_BROKEN).exit_status == 1
    api = ApiError(404, codes.NOT_FOUND, "no such secret")
    assert isinstance(api, RelayError)
    assert api.http_status == 404 == api.status
    assert api.diagnostics() == "not_found: no such secret"


def test_diode_errors_are_registered() -> None:
    from relay.diode.manifest import ObjectRejected
    from relay.diode.packet import PacketRejected

    assert reasons.is_registered(PacketRejected("x").code)
    assert reasons.is_registered(ObjectRejected("x").code)


def test_the_cli_exits_with_the_registered_status(tmp_path: Path) -> None:
    result = run_relay("gateway", "config", "get", "export.every", "--home", str(tmp_path))
    assert result.err.startswith("relay: error: not_initialized: ")
    assert result.status == reasons.exit_status_of(codes.NOT_INITIALIZED) == 2
