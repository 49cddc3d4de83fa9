"""The local HTTP API (Starlette): OAuth 2.0 client-credentials tokens and secret reads.

Endpoints: ``POST /v1/oauth2/token``, ``GET /v1/secrets/{path}``, ``GET /v1/health``,
``GET /metrics`` and the schema at ``/openapi.json``. Errors are ``{"error": CODE, "message": …}``.
Every response says ``Cache-Control: no-store``. The token endpoint takes ``client_secret_basic``
and ``client_secret_post`` (:mod:`inner_agent.client_auth`); the served document states every
constraint (:mod:`inner_agent.api_schema` builds it with FastAPI from the response models; the
service serves the generated copy, :mod:`inner_agent.api_document`, so that neither FastAPI nor
pydantic is loaded by a running agent: see docs/adr/0018-lean-agent.md). Request bodies are
capped before the app sees them (413 ``too_large``); headers are capped here (400
``headers_too_large``) and, when they trickle in, by the HTTP parser (400 ``bad_request``).
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inner_agent.client_auth import parse_token_request
from inner_agent.lookup import Secret
from inner_agent.metrics import CONTENT_TYPE
from inner_agent.service import AgentService, ApiError
from relay.codes import (
    BAD_REQUEST,
    FORBIDDEN,
    HEADERS_TOO_LARGE,
    INVALID_CLIENT,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    TOO_LARGE,
    UID_NOT_ALLOWED,
    UNAUTHORIZED,
)

MAX_BODY_BYTES = 8 * 1024
MAX_HEADER_BYTES = 16 * 1024
PEER_UID_KEY = "relay.peer_uid"
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
RETRY_AFTER = "60"  # seconds; the failed-authentication window
# RFC 6749 §5.2 (client authentication) and RFC 6750 §3 (bearer tokens)
CHALLENGES = {
    INVALID_CLIENT: 'Basic realm="relay"',
    UNAUTHORIZED: 'Bearer realm="relay"',
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The JSON error body every endpoint uses."""
    return JSONResponse(
        {"error": code, "message": message},
        status_code=status,
        headers={**NO_STORE, **(headers or {})},
    )


def _error_headers(status: int, code: str) -> dict[str, str]:
    if status == 401:
        return {"www-authenticate": CHALLENGES.get(code, CHALLENGES[UNAUTHORIZED])}
    return {"retry-after": RETRY_AFTER} if status == 429 else {}


def secret_body(secret: Secret) -> dict[str, Any]:
    """The JSON body for ``secret``: UTF-8 text when it decodes, base64 otherwise."""
    try:
        value, encoding = secret.value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        value, encoding = base64.b64encode(secret.value).decode("ascii"), "base64"
    return {
        "path": secret.path,
        "value": value,
        "encoding": encoding,
        "version": secret.version,
        "expires_at": secret.expires_at,
    }


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def create_app(service: AgentService, bench: bool = False) -> ASGIApp:
    """The ASGI application serving ``service``."""

    async def token(request: Request) -> Response:
        """OAuth 2.0 client credentials grant: ``client_secret_basic`` (HTTP Basic) or
        ``client_secret_post`` (form or JSON body); errors as in RFC 6749 §5.2."""
        headers = request.headers
        asked = parse_token_request(
            await request.body(), headers.get("content-type", ""), headers.get("authorization", "")
        )
        issued = service.issue_token(asked.client_id, asked.client_secret)
        body = {
            "access_token": issued.token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
        }
        return JSONResponse(body, headers=NO_STORE)

    async def read_secret(request: Request) -> Response:
        """The value of the secret at ``path`` (needs ``Authorization: Bearer TOKEN``);
        ``?version=previous|pending`` for the other labelled versions."""
        path: str = request.path_params["path"]
        version = request.query_params.get("version", "current")
        token = _bearer(request)
        if _encoded_separator(request.scope.get("raw_path", b"")):
            service.refuse_encoded_path(token, path)
        secret = service.read(token, path, version)
        return JSONResponse(secret_body(secret), headers=NO_STORE)

    async def health(_: Request) -> Response:
        """Last import, secret count and staleness."""
        return JSONResponse(service.health(), headers=NO_STORE)

    async def metrics(_: Request) -> Response:
        """Prometheus text exposition."""
        return Response(service.metrics.render(), media_type=CONTENT_TYPE, headers=NO_STORE)

    async def constant(_: Request) -> Response:
        return JSONResponse({"value": "constant"}, headers=NO_STORE)

    routes = [
        _only("/v1/oauth2/token", token, "POST"),
        _only("/v1/secrets/{path:path}", read_secret, "GET"),
        _only("/v1/health", health, "GET"),
        _only("/metrics", metrics, "GET"),
        Route("/openapi.json", _openapi, methods=["GET", "HEAD"]),
    ]
    if bench:
        routes.append(_only("/v1/_bench/constant", constant, "GET"))
    app = Starlette(
        routes=routes,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
    )
    return Guard(app, service)


def _only(path: str, endpoint: Callable[[Request], Awaitable[Response]], method: str) -> Route:
    """A route for exactly ``method`` (Starlette adds HEAD to GET routes; the API never did)."""
    route = Route(path, endpoint, methods=[method])
    route.methods = {method}
    return route


async def _openapi(_: Request) -> Response:
    """The document, as generated (``python -m inner_agent.api_schema``)."""
    from inner_agent.api_document import DOCUMENT

    return Response(DOCUMENT, media_type="application/json")


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)  # noqa: S101 - registered for ApiError only
    headers = _error_headers(exc.status, exc.code)
    return error_response(exc.status, exc.code, exc.message, headers)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
    code = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED}.get(exc.status_code, BAD_REQUEST)
    given = {k.lower(): v for k, v in (exc.headers or {}).items()}
    allow = {"allow": given["allow"]} if "allow" in given else {}  # RFC 9110 §15.5.6
    return error_response(exc.status_code, code, str(exc.detail), allow)


def _encoded_separator(raw_path: bytes) -> bool:
    lowered = raw_path.lower()
    return any(marker in lowered for marker in (b"%2f", b"%5c", b"%00", b"%2e"))


class Guard:
    """Outermost ASGI layer: unix-socket peer check, body cap, response counting."""

    def __init__(self, app: ASGIApp, service: AgentService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counted = self._counting(send)
        allowed = self.service.settings.allowed_uids
        uid = scope.get(PEER_UID_KEY)
        if uid is not None and allowed and uid not in allowed:
            self.service.denials.note(
                "secret.denied", UID_NOT_ALLOWED, app=None, path=None, uid=uid
            )
            await error_response(403, FORBIDDEN, f"uid {uid} may not use this socket")(
                scope, receive, counted
            )
            return
        if sum(len(k) + len(v) for k, v in scope["headers"]) > MAX_HEADER_BYTES:
            await error_response(
                400, HEADERS_TOO_LARGE, f"request headers are capped at {MAX_HEADER_BYTES} bytes"
            )(scope, receive, counted)
            return
        try:
            body = await _read_capped(scope, receive)
        except _ClientGone:  # timed out mid-body (api.read_timeout) or hung up: nobody to answer
            return
        if body is None:
            await error_response(413, TOO_LARGE, f"request bodies are capped at {MAX_BODY_BYTES}")(
                scope, receive, counted
            )
            return
        await self.app(scope, _replay(body, receive), counted)

    def _counting(self, send: Send) -> Send:
        requests = self.service.metrics.requests

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                requests.labels(status=str(message["status"])).inc()
            await send(message)

        return counted


async def _read_capped(scope: Scope, receive: Receive) -> bytes | None:
    """The whole request body, or ``None`` when it is over the cap (read no further)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                if int(value) > MAX_BODY_BYTES:
                    return None
            except ValueError:
                return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class _ClientGone(Exception):
    """The connection closed before the whole body arrived."""


def _replay(body: bytes, original: Receive) -> Receive:
    """A ``receive`` that yields the buffered body once, then waits on the connection."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()

    return receive
