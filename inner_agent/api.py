"""The local HTTP API (FastAPI): OAuth 2.0 client-credentials tokens and secret reads.

Endpoints: ``POST /v1/oauth2/token``, ``GET /v1/secrets/{path}``, ``GET /v1/health``,
``GET /metrics`` and the schema at ``/openapi.json``. Errors are ``{"error": CODE, "message": …}``.
Every response says ``Cache-Control: no-store``. Request bodies are capped before the app sees
them (413 ``too_large``); headers are capped here (400 ``headers_too_large``) and, when they
trickle in, by the HTTP parser (400 ``bad_request``).
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inner_agent.lookup import Secret
from inner_agent.metrics import CONTENT_TYPE
from inner_agent.service import AgentService, ApiError

MAX_BODY_BYTES = 8 * 1024
MAX_HEADER_BYTES = 16 * 1024
PEER_UID_KEY = "relay.peer_uid"
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}


class TokenResponse(BaseModel):
    """An OAuth 2.0 access token response."""

    access_token: str
    token_type: str
    expires_in: int


class SecretResponse(BaseModel):
    """A secret. ``encoding`` is ``utf-8`` (``value`` is the text) or ``base64`` (``value`` is
    the base64 of bytes that are not UTF-8)."""

    path: str
    value: str
    encoding: str
    version: int
    expires_at: int | None


class ErrorResponse(BaseModel):
    """Every error: a stable code and a human message (never a secret)."""

    error: str
    message: str


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The JSON error body every endpoint uses."""
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=NO_STORE)


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


def _token_form(body: bytes, content_type: str) -> dict[str, str]:
    if content_type.startswith("application/json"):
        doc = json.loads(body or b"null")
        if not isinstance(doc, dict):
            raise ValueError
        return {str(k): str(v) for k, v in doc.items() if isinstance(v, str)}
    fields = parse_qs(body.decode("ascii"), strict_parsing=bool(body), max_num_fields=16)
    return {key: values[0] for key, values in fields.items()}


def create_app(service: AgentService, bench: bool = False) -> ASGIApp:
    """The ASGI application serving ``service``."""
    app = FastAPI(
        title="relay agent API",
        version="1",
        docs_url=None,
        redoc_url=None,
        description="Local API of the relay inner agent: tokens and secret reads.",
    )
    errors: dict[int | str, dict[str, Any]] = {
        s: {"model": ErrorResponse} for s in (400, 401, 403, 404, 410, 413)
    }

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, "bad_request", "the request is not valid")

    @app.post("/v1/oauth2/token", response_model=TokenResponse, responses=errors)
    async def token(request: Request) -> Response:
        """OAuth 2.0 client-credentials grant (form or JSON body)."""
        try:
            form = _token_form(await request.body(), request.headers.get("content-type", ""))
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "invalid_request", "the body is not a valid form or JSON") from None
        if form.get("grant_type") != "client_credentials":
            raise ApiError(400, "unsupported_grant_type", "grant_type must be client_credentials")
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if not client_id or not client_secret:
            raise ApiError(400, "invalid_request", "client_id and client_secret are required")
        issued = service.issue_token(client_id, client_secret)
        body = {
            "access_token": issued.token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
        }
        return JSONResponse(body, headers=NO_STORE)

    @app.get("/v1/secrets/{path:path}", response_model=SecretResponse, responses=errors)
    async def read_secret(path: str, request: Request, version: str = "current") -> Response:
        """The value of the secret at ``path`` (needs ``Authorization: Bearer TOKEN``);
        ``?version=previous|pending`` for the other labelled versions."""
        token = _bearer(request)
        if _encoded_separator(request.scope.get("raw_path", b"")):
            service.refuse_encoded_path(token, path)
        secret = service.read(token, path, version)
        return JSONResponse(secret_body(secret), headers=NO_STORE)

    @app.get("/v1/health")
    async def health() -> Response:
        """Last import, secret count and staleness."""
        return JSONResponse(service.health(), headers=NO_STORE)

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus text exposition."""
        return Response(service.metrics.render(), media_type=CONTENT_TYPE, headers=NO_STORE)

    if bench:

        @app.get("/v1/_bench/constant", include_in_schema=False)
        async def constant() -> Response:
            return JSONResponse({"value": "constant"}, headers=NO_STORE)

    return Guard(app, service)


def _encoded_separator(raw_path: bytes) -> bool:
    lowered = raw_path.lower()
    return any(marker in lowered for marker in (b"%2f", b"%5c", b"%00", b"%2e"))


class Guard:
    """Outermost ASGI layer: unix-socket peer check, body cap, response counting."""

    def __init__(self, app: ASGIApp, service: AgentService) -> None:
        self.app = app
        self.service = service
        self.fastapi = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counted = self._counting(send)
        allowed = self.service.settings.allowed_uids
        uid = scope.get(PEER_UID_KEY)
        if uid is not None and allowed and uid not in allowed:
            from inner_agent import denials

            denials.note("secret.denied", "uid_not_allowed", app=None, path=None, uid=uid)
            await error_response(403, "forbidden", f"uid {uid} may not use this socket")(
                scope, receive, counted
            )
            return
        if sum(len(k) + len(v) for k, v in scope["headers"]) > MAX_HEADER_BYTES:
            await error_response(
                400, "headers_too_large", f"request headers are capped at {MAX_HEADER_BYTES} bytes"
            )(scope, receive, counted)
            return
        body = await _read_capped(scope, receive)
        if body is None:
            await error_response(
                413, "too_large", f"request bodies are capped at {MAX_BODY_BYTES}"
            )(scope, receive, counted)
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
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


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
