"""Token request parsing (pure): both client authentication methods and RFC 6749 §5.2 errors."""

from __future__ import annotations

import base64

import pytest

from inner_agent.client_auth import parse_token_request
from relay.errors import ApiError

FORM = "application/x-www-form-urlencoded"
GRANT = b"grant_type=client_credentials"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def refused(body: bytes, content_type: str = FORM, authorization: str = "") -> tuple[int, str]:
    with pytest.raises(ApiError) as caught:
        parse_token_request(body, content_type, authorization)
    return caught.value.status, caught.value.code


def test_client_secret_basic_is_form_urlencoded_first() -> None:
    asked = parse_token_request(GRANT, FORM, basic("app-1%3Ax", "rs_a%2Bb+c"))
    assert (asked.client_id, asked.client_secret) == ("app-1:x", "rs_a+b c")
    assert "rs_" not in repr(asked)


def test_client_secret_post_as_form_or_json() -> None:
    asked = parse_token_request(GRANT + b"&client_id=app-1&client_secret=s&scope=x", FORM, "")
    assert (asked.client_id, asked.client_secret) == ("app-1", "s")
    doc = b'{"grant_type":"client_credentials","client_id":"app-1","client_secret":"s"}'
    assert parse_token_request(doc, "application/json; charset=utf-8", "").client_id == "app-1"


@pytest.mark.parametrize(
    ("body", "content_type", "authorization", "expected"),
    [
        (b"", FORM, "", (400, "invalid_request")),
        (b"grant_type=password", FORM, "", (400, "unsupported_grant_type")),
        (GRANT, FORM, "", (401, "invalid_client")),
        (GRANT + b"&client_id=app-1", FORM, "", (401, "invalid_client")),
        (GRANT, FORM, "Basic %%%", (401, "invalid_client")),
        (GRANT, FORM, basic("app-1", ""), (401, "invalid_client")),
        (GRANT + b"&client_id=app-1", FORM, basic("app-1", "s"), (400, "invalid_request")),
        (GRANT + b"&" + GRANT, FORM, basic("app-1", "s"), (400, "invalid_request")),
        (b"grant_type=\xff", FORM, "", (400, "invalid_request")),
        (b"[" * 5000 + b"]" * 5000, "application/json", "", (400, "invalid_request")),
        (b'"just a string"', "application/json", "", (400, "invalid_request")),
    ],
)
def test_refusals(
    body: bytes, content_type: str, authorization: str, expected: tuple[int, str]
) -> None:
    assert refused(body, content_type, authorization) == expected


def test_unknown_parameters_are_ignored_even_twice() -> None:
    body = GRANT + b"&x=1&x=2&client_id=app-1&client_secret=s"
    assert parse_token_request(body, FORM, "").client_secret == "s"
