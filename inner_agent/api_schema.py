"""The OpenAPI document of the local API, stating every constraint the server enforces.

FastAPI describes the routes (:func:`describing_app`, a twin of :func:`inner_agent.api.create_app`
that serves nothing) and the response models; this module adds what it cannot see because the
handlers check it themselves (so that refusals are audited and answered with relay's reason
codes rather than a framework's): the secret path pattern, the token request bodies and both
client authentication methods, and every error status each operation can answer, all with the
one error schema. ``tests/test_agent_openapi.py`` runs a schema-driven fuzzer over it.

The running agent does not import this module (nor FastAPI and pydantic): it serves the
generated copy in :mod:`inner_agent.api_document`. After changing the API or this module run
``python -m inner_agent.api_schema`` to regenerate it; ``tests/test_agent_api_document.py``
fails while the copy differs from what this module builds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import BaseModel

DOCUMENT_MODULE = Path(__file__).with_name("api_document.py")

# One segment: A-Z a-z 0-9 . _ -, but not "." or ".." (relay.paths.is_valid_path).
_SEGMENT = r"(?:[A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+)"
PATH_PATTERN = rf"^{_SEGMENT}(?:/{_SEGMENT}){{0,15}}$"
ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}

_WHY = {
    400: "Malformed request (reason code in `error`)",
    401: "Missing or failed authentication",
    403: "Not allowed (this app's grants, or a unix-socket uid not in api.allowed_uids)",
    404: "No such secret",
    405: "Method not allowed (see `Allow`)",
    408: "The request was not sent in full within api.read_timeout",
    410: "Expired secret, or a fail-closed secret while the agent is stale",
    413: "Request body over the cap",
    429: "Too many failed client authentications; the right secret is still accepted",
    503: "Too many connections being served",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}},
    405: {"Allow": {"schema": {"type": "string"}, "required": True}},
    429: {"Retry-After": {"schema": {"type": "string"}, "required": True}},
}
_COMMON = (400, 403, 405, 408, 413, 503)  # the guard, the HTTP parser and the router
_ERRORS = {
    ("/v1/oauth2/token", "post"): (*_COMMON, 401, 429),
    ("/v1/secrets/{path}", "get"): (*_COMMON, 401, 404, 410),
    ("/v1/health", "get"): _COMMON,
    ("/metrics", "get"): _COMMON,
}

_TOKEN_REQUEST = {
    "type": "object",
    "description": "Client credentials grant. With client_secret_basic the client id and "
    "secret go in the Authorization header (each form-urlencoded, RFC 6749 §2.3.1) and not in "
    "the body; with client_secret_post both go in the body. Each of these parameters at most "
    "once; unknown parameters are ignored.",
    "required": ["grant_type"],
    "maxProperties": 16,
    "properties": {
        "grant_type": {"type": "string", "enum": ["client_credentials"]},
        "client_id": {"type": "string", "minLength": 1},
        "client_secret": {"type": "string", "minLength": 1},
        "scope": {"type": "string"},
    },
}
_SECURITY = {
    "clientSecretBasic": {"type": "http", "scheme": "basic"},
    "bearerAuth": {"type": "http", "scheme": "bearer"},
}


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


class HealthResponse(BaseModel):
    """The service's state: freshness and counts."""

    status: str
    stale: bool
    last_import: int | None
    seconds_since_fresh_bundle: float | None
    max_staleness: int | None
    secrets: int
    secrets_expiring_24h: int


class ErrorResponse(BaseModel):
    """Every error: a stable code and a human message (never a secret)."""

    error: str
    message: str


def describing_app() -> FastAPI:
    """The routes of :func:`inner_agent.api.create_app`, as FastAPI sees them: for the document
    only (the handlers here answer nothing)."""
    app = FastAPI(
        title="relay agent API",
        version="1",
        docs_url=None,
        redoc_url=None,
        description="Local API of the relay inner agent: tokens and secret reads.",
    )
    errors: dict[int | str, dict[str, Any]] = {400: {"model": ErrorResponse}}

    @app.post("/v1/oauth2/token", response_model=TokenResponse, responses=errors)
    async def token(request: Request) -> Response:
        """OAuth 2.0 client credentials grant: ``client_secret_basic`` (HTTP Basic) or
        ``client_secret_post`` (form or JSON body); errors as in RFC 6749 §5.2."""
        raise NotImplementedError

    @app.get("/v1/secrets/{path:path}", response_model=SecretResponse, responses=errors)
    async def read_secret(path: str, request: Request, version: str = "current") -> Response:
        """The value of the secret at ``path`` (needs ``Authorization: Bearer TOKEN``);
        ``?version=previous|pending`` for the other labelled versions."""
        raise NotImplementedError

    @app.get("/v1/health", response_model=HealthResponse)
    async def health() -> Response:
        """Last import, secret count and staleness."""
        raise NotImplementedError

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus text exposition."""
        raise NotImplementedError

    return app


def render_document() -> str:
    """The served document, encoded as FastAPI's ``/openapi.json`` route encodes it."""
    return json.dumps(
        build_document(describing_app()),
        ensure_ascii=False,
        allow_nan=False,
        indent=None,
        separators=(",", ":"),
    )


def document_module(document: str) -> str:
    """The source of :mod:`inner_agent.api_document` for ``document``."""
    lines, line = [], b""
    for byte in document.encode("utf-8"):
        piece = bytes([byte])
        if len(repr(line + piece)) > 88:
            lines.append(line)
            line = b""
        line += piece
    lines.append(line)
    body = "".join(f"    {chunk!r}\n" for chunk in lines)
    return (
        '"""The OpenAPI document the agent serves at ``/openapi.json``: GENERATED by\n'
        "``python -m inner_agent.api_schema`` (do not edit; see that module).\n"
        '"""\n\n'
        f"DOCUMENT = (\n{body})\n"
    )


def build_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document of ``app`` with relay's constraints filled in."""
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    doc["components"]["securitySchemes"] = _SECURITY
    for (path, method), statuses in _ERRORS.items():
        operation = doc["paths"][path][method]
        operation["responses"].pop("422", None)
        for status in statuses:
            operation["responses"][str(status)] = _error_response(status)
    _token_operation(doc["paths"]["/v1/oauth2/token"]["post"])
    _secret_operation(doc["paths"]["/v1/secrets/{path}"]["get"])
    doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"] = {
        "text/plain": {"schema": {"type": "string"}}
    }
    return doc


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _WHY[status],
        "content": {"application/json": {"schema": ERROR_REF}},
    }
    if status in _HEADERS:
        response["headers"] = _HEADERS[status]
    return response


def _token_operation(operation: dict[str, Any]) -> None:
    operation["requestBody"] = {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {"schema": _TOKEN_REQUEST},
            "application/json": {"schema": _TOKEN_REQUEST},
        },
    }
    operation["security"] = [{"clientSecretBasic": []}, {}]


def _secret_operation(operation: dict[str, Any]) -> None:
    parameters = {p["name"]: p for p in operation["parameters"]}
    parameter = parameters["path"]
    if "version" in parameters:  # ?version=previous|pending (docs/rotation.md)
        parameters["version"]["description"] = (
            "Which labelled version: current (the default), previous (kept for the overlap) or "
            "pending (pre-staged, before its activation time)."
        )
        parameters["version"]["schema"] = {
            "type": "string",
            "enum": ["current", "previous", "pending"],
            "default": "current",
        }
    parameter["description"] = (
        "Secret path: 1 to 16 segments of A-Z a-z 0-9 . _ - (not . or ..) joined by /, at most "
        "256 characters. Slashes are sent as they are: %2F, %5C, %2E and %00 are refused."
    )
    parameter["schema"] = {
        "type": "string",
        "minLength": 1,
        "maxLength": 256,
        "pattern": PATH_PATTERN,
    }
    operation["security"] = [{"bearerAuth": []}]


if __name__ == "__main__":
    DOCUMENT_MODULE.write_text(document_module(render_document()))
    sys.stdout.write(f"wrote {DOCUMENT_MODULE}\n")
