"""Listening addresses as operators write them: ``relay.netaddr``."""

from __future__ import annotations

import pytest

from relay.codes import BAD_LISTEN
from relay.errors import UsageError
from relay.netaddr import is_loopback, parse_listen


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8787", ("127.0.0.1", 8787)),
        (" 0.0.0.0:0 ", ("0.0.0.0", 0)),
        ("[::1]:8787", ("::1", 8787)),
        ("localhost:65535", ("localhost", 65535)),
    ],
)
def test_host_and_port_are_parsed(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "8787",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "example.org:80",
        "::1:80:x",
        "[::1]:port",
        "",
    ],
)
def test_anything_else_is_bad_listen(text: str) -> None:
    with pytest.raises(UsageError) as refused:
        parse_listen(text)
    assert refused.value.code == BAD_LISTEN
    assert "\n" not in refused.value.message


def test_loopback_is_told_apart() -> None:
    assert is_loopback("localhost")
    assert is_loopback("127.0.0.1")
    assert is_loopback("127.8.9.10")
    assert is_loopback("::1")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("192.0.2.1")
    assert not is_loopback("::")
