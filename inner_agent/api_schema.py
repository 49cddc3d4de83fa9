"""The OpenAPI document of the local API, stating every constraint the server enforces.

FastAPI describes the routes and the response models; this module adds what it cannot see
because the handlers check it themselves (so that refusals are audited and answered with relay's
reason codes rather than a framework's): the secret path pattern, the token request bodies and
both client authentication methods, and every error status each operation can answer, all with
the one error schema. ``tests/test_agent_openapi.py`` runs a schema-driven fuzzer over it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

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


def install_schema(app: FastAPI) -> None:
    """Serve the completed document at ``/openapi.json`` (built once, on first request)."""
    built: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not built:
            built.update(build_document(app))
        return built

    app.openapi = openapi  # type: ignore[method-assign]


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
