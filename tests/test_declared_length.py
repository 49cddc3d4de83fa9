"""The one strict codec answers "how long is this bundle?" for the inbox: every bad length field
is a ``malformed`` verdict (treated as "unknown"), never an exception escaping a scan.

Regression: ``{"payload_len":1e999}`` or a header nested thousands deep made the inbox's own loose
parser raise (OverflowError, RecursionError), so every later file in the inbox was never applied.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inner_agent.inbox import COMPLETE, INCOMPLETE, UNKNOWN, completeness
from relay.bundle.envelope import HEAD_BYTES_MAX, MAGIC, declared_length
from relay.errors import BundleRejected
from tests.bundle_kit import make_bundle
from tests.intake_kit import bad_length_forms, with_header

FORMS = bad_length_forms()


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_bad_length_form_is_malformed_or_not_yet_known(form: str) -> None:
    data = FORMS[form]
    try:
        assert declared_length(data) is None  # a prefix too short to tell
    except BundleRejected as exc:
        assert exc.code == "malformed"


@pytest.mark.parametrize("form", sorted(FORMS))
def test_the_inbox_never_raises_on_a_bad_length(form: str) -> None:
    data = FORMS[form]
    assert completeness(data) in (UNKNOWN, INCOMPLETE)
    assert completeness(data, len(data) + 10**9) in (UNKNOWN, INCOMPLETE)


def test_the_declared_length_of_a_real_bundle_and_its_prefixes() -> None:
    data = make_bundle()
    assert declared_length(data) == len(data)
    header_end = data.index(b"}") + 1
    assert declared_length(data[:header_end]) == len(data)
    assert declared_length(data[: header_end - 1]) is None
    assert declared_length(MAGIC[:3]) is None
    assert completeness(data) == COMPLETE
    assert completeness(data[:header_end], len(data)) == COMPLETE


def test_a_well_formed_json_header_that_is_not_v1_is_malformed() -> None:
    with pytest.raises(BundleRejected):
        declared_length(with_header(b'{"payload_len":100}'))


@settings(max_examples=300, deadline=None)
@given(tail=st.binary(max_size=300), length=st.integers(0, 2**32 - 1), magic=st.booleans())
def test_no_prefix_raises_anything_but_a_reason_code(tail: bytes, length: int, magic: bool) -> None:
    data = (MAGIC if magic else b"") + length.to_bytes(4, "big") + tail
    try:
        declared_length(data[:HEAD_BYTES_MAX])
    except BundleRejected as exc:
        assert exc.code == "malformed"
    assert completeness(data) in (COMPLETE, INCOMPLETE, UNKNOWN)
