"""The token request of the local API: OAuth 2.0 client credentials grant (RFC 6749 §4.4).

The client authenticates with ``client_secret_basic`` (HTTP Basic, the client id and secret each
form-urlencoded first, RFC 6749 §2.3.1) or ``client_secret_post`` (both in the body); using both
at once is an ``invalid_request``. The body is ``application/x-www-form-urlencoded`` (or JSON
with the same fields), at most 16 of them; one of the grant's parameters given twice is an
``invalid_request``, unknown parameters are ignored (§3.2). Errors follow
§5.2: ``invalid_request`` and ``unsupported_grant_type`` are 400, ``invalid_client`` is 401.

Pure: bytes and header values in, a :class:`TokenRequest` or an :class:`ApiError` out. Nothing
here is logged, and no error message echoes what the client sent.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote_plus

from relay.codes import INVALID_CLIENT, INVALID_REQUEST, UNSUPPORTED_GRANT_TYPE
from relay.errors import ApiError

GRANT_TYPE = "client_credentials"
MAX_FIELDS = 16
KNOWN = ("grant_type", "client_id", "client_secret", "scope")  # others are ignored (§3.2)


@dataclass(frozen=True)
class TokenRequest:
    """Client credentials taken from a well-formed token request."""

    client_id: str
    client_secret: str

    def __repr__(self) -> str:
        return "TokenRequest(<hidden>)"


def parse_token_request(body: bytes, content_type: str, authorization: str) -> TokenRequest:
    """The credentials of a client credentials grant, or an :class:`ApiError` (RFC 6749 §5.2)."""
    form = _fields(body, content_type)
    grant = form.get("grant_type")
    if not grant:
        raise ApiError(400, INVALID_REQUEST, "grant_type is required")
    if grant != GRANT_TYPE:
        raise ApiError(400, UNSUPPORTED_GRANT_TYPE, "grant_type must be client_credentials")
    basic = _basic_credentials(authorization)
    posted = form.get("client_id"), form.get("client_secret")
    if basic is not None:
        if any(posted):
            raise ApiError(
                400, INVALID_REQUEST, "use one client authentication method, not Basic and body"
            )
        return TokenRequest(*basic)
    client_id, client_secret = posted
    if not client_id or not client_secret:
        raise ApiError(401, INVALID_CLIENT, "client authentication is required")
    return TokenRequest(client_id, client_secret)


def _fields(body: bytes, content_type: str) -> dict[str, str]:
    media = content_type.split(";", 1)[0].strip().lower()
    try:
        return _json_fields(body) if media == "application/json" else _form_fields(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, INVALID_REQUEST, "the body is not a valid form or JSON") from None


def _json_fields(body: bytes) -> dict[str, str]:
    doc = json.loads(body or b"null")  # RecursionError when nested too deeply: a 400 too
    if not isinstance(doc, dict) or len(doc) > MAX_FIELDS:
        raise ValueError
    return {str(k): v for k, v in doc.items() if isinstance(v, str)}


def _form_fields(body: bytes) -> dict[str, str]:
    fields = parse_qs(
        body.decode("ascii"),
        strict_parsing=bool(body),
        max_num_fields=MAX_FIELDS,
        errors="strict",
    )
    if any(len(fields.get(name, ())) > 1 for name in KNOWN):
        raise ValueError  # RFC 6749 §3.2: parameters must not be included more than once
    return {key: values[0] for key, values in fields.items()}


def _basic_credentials(authorization: str) -> tuple[str, str] | None:
    """``(client_id, client_secret)`` from ``Authorization: Basic …``, ``None`` without one."""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise ApiError(401, INVALID_CLIENT, "the Basic credentials are malformed") from None
    user, colon, password = decoded.partition(":")
    client_id, client_secret = unquote_plus(user), unquote_plus(password)
    if not colon or not client_id or not client_secret:
        raise ApiError(401, INVALID_CLIENT, "the Basic credentials are malformed")
    return client_id, client_secret
