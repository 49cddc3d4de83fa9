"""A small typed client for the agent's local API (standard library only).

Example::

    from relay.client import Client

    client = Client("http://127.0.0.1:8787", client_id="app-…", client_secret="rs_…")
    secret = client.get("db/web/password")
    connect(password=secret.value)  # secret.version, secret.expires_at

Credentials also come from the environment (:meth:`Client.from_env`: ``RELAY_API_URL`` or
``RELAY_API_SOCKET``, ``RELAY_CLIENT_ID``, and ``RELAY_CLIENT_SECRET`` or
``RELAY_CLIENT_SECRET_FILE``). The client fetches a token on first use, refreshes it shortly
before it expires and once after a ``401``. Errors are :class:`ApiError` with the API's stable
``code`` (``not_found``, ``forbidden``, ``expired``, ``stale``, ``invalid_client``…) and HTTP
``status``; a failed connection is :class:`ApiError` with code ``unreachable``.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from relay.codes import API_ERROR, BAD_RESPONSE, NO_CREDENTIALS, TOO_LARGE, UNREACHABLE
from relay.errors import RelayError

TOKEN_MARGIN = 30.0  # refresh this many seconds before the token expires
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
URL_ENV = "RELAY_API_URL"
SOCKET_ENV = "RELAY_API_SOCKET"
ID_ENV = "RELAY_CLIENT_ID"
SECRET_ENV = "RELAY_CLIENT_SECRET"  # noqa: S105 - a variable name
SECRET_FILE_ENV = "RELAY_CLIENT_SECRET_FILE"  # noqa: S105 - a variable name


class ApiError(RelayError):
    """The API refused a request (``code`` is the API's), or could not be reached."""

    code = API_ERROR

    def __init__(self, code: str, message: str, status: int = 0) -> None:
        super().__init__(message, code=code)
        self.status = status


@dataclass(frozen=True)
class Secret:
    """One secret read through the API. ``value`` is text when the value is UTF-8, else bytes."""

    path: str
    value: str | bytes
    version: int
    expires_at: int | None

    def __repr__(self) -> str:
        return f"Secret(path={self.path!r}, version={self.version}, value=<hidden>)"

    @property
    def value_bytes(self) -> bytes:
        """The value as bytes, whatever its encoding on the wire."""
        return self.value if isinstance(self.value, bytes) else self.value.encode("utf-8")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class Client:
    """A client of one agent's API, holding one access token (thread-safe)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        client_id: str,
        client_secret: str,
        unix_socket: str | Path | None = None,
        timeout: float = 10.0,
        clock: Any = time.monotonic,
    ) -> None:
        if (url is None) == (unix_socket is None):
            raise ValueError("give exactly one of url and unix_socket")
        self._url = urlsplit(url) if url is not None else None
        if self._url is not None and self._url.scheme not in ("http", "https"):
            raise ValueError("url must be http:// or https://")
        self._socket = str(unix_socket) if unix_socket is not None else None
        self._id = client_id
        self._secret = client_secret
        self._timeout = timeout
        self._clock = clock
        self._token: str | None = None
        self._token_until = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        where = self._socket or (self._url.geturl() if self._url else "")
        return f"Client({where!r}, client_id={self._id!r}, client_secret=<hidden>)"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Client:
        """A client configured from ``RELAY_API_URL``/``RELAY_API_SOCKET`` and
        ``RELAY_CLIENT_ID`` with ``RELAY_CLIENT_SECRET`` or ``RELAY_CLIENT_SECRET_FILE``."""
        env = os.environ if environ is None else environ
        url, sock = env.get(URL_ENV), env.get(SOCKET_ENV)
        client_id = env.get(ID_ENV, "")
        secret = env.get(SECRET_ENV, "")
        if not secret and env.get(SECRET_FILE_ENV):
            secret = Path(env[SECRET_FILE_ENV]).read_text(encoding="utf-8").strip()
        if not client_id or not secret:
            raise ApiError(
                code=NO_CREDENTIALS, message=f"set {ID_ENV} and {SECRET_ENV} (or *_FILE)"
            )
        if not url and not sock:
            raise ApiError(code=NO_CREDENTIALS, message=f"set {URL_ENV} or {SOCKET_ENV}")
        return cls(url or None, client_id=client_id, client_secret=secret, unix_socket=sock or None)

    # -- public --------------------------------------------------------------------------------

    def get(self, path: str) -> Secret:
        """The current value of ``path``; :class:`ApiError` with the API's code otherwise."""
        target = "/v1/secrets/" + quote(path, safe="/")
        status, doc = self._authorized("GET", target)
        if status != 200:
            raise _error(status, doc)
        value: str | bytes = str(doc["value"])
        if doc.get("encoding") == "base64":
            value = base64.b64decode(str(doc["value"]))
        expires = doc.get("expires_at")
        return Secret(str(doc["path"]), value, int(doc["version"]), _int_or_none(expires))

    def health(self) -> dict[str, Any]:
        """The body of ``GET /v1/health`` (no token needed)."""
        status, doc = self._request("GET", "/v1/health")
        if status != 200:
            raise _error(status, doc)
        return doc

    # -- tokens --------------------------------------------------------------------------------

    def _authorized(self, method: str, target: str) -> tuple[int, dict[str, Any]]:
        status, doc = self._request(method, target, token=self._current_token())
        if status == 401:  # revoked, or the agent restarted: one fresh token, one retry
            self._forget_token()
            status, doc = self._request(method, target, token=self._current_token())
        return status, doc

    def _current_token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._token_until:
                self._fetch_token()
            assert self._token is not None  # noqa: S101 - set by _fetch_token
            return self._token

    def _forget_token(self) -> None:
        with self._lock:
            self._token = None

    def _fetch_token(self) -> None:
        body = urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": self._id,
                "client_secret": self._secret,
            }
        ).encode("ascii")
        status, doc = self._request("POST", "/v1/oauth2/token", body=body)
        if status != 200:
            raise _error(status, doc)
        ttl = float(doc.get("expires_in", 60))
        self._token = str(doc["access_token"])
        self._token_until = self._clock() + max(ttl - min(TOKEN_MARGIN, ttl / 2), 0.0)

    # -- transport -----------------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        if self._socket is not None:
            return _UnixConnection(self._socket, self._timeout)
        assert self._url is not None  # noqa: S101 - checked in __init__
        kind = (
            http.client.HTTPSConnection
            if self._url.scheme == "https"
            else http.client.HTTPConnection
        )
        return kind(self._url.hostname or "localhost", self._url.port, timeout=self._timeout)

    def _request(
        self, method: str, target: str, token: str | None = None, body: bytes | None = None
    ) -> tuple[int, dict[str, Any]]:
        prefix = (self._url.path.rstrip("/") if self._url is not None else "") or ""
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn = self._connection()
        try:
            conn.request(method, prefix + target, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read(MAX_RESPONSE_BYTES + 1)
            status = response.status
        except OSError as exc:
            message = f"cannot reach the agent API: {exc.strerror or exc}"
            raise ApiError(code=UNREACHABLE, message=message) from None
        except http.client.HTTPException as exc:
            message = f"bad answer from the agent API: {type(exc).__name__}"
            raise ApiError(code=UNREACHABLE, message=message) from None
        finally:
            conn.close()
        return status, _json_body(status, data)


def _json_body(status: int, data: bytes) -> dict[str, Any]:
    if len(data) > MAX_RESPONSE_BYTES:
        raise ApiError(code=TOO_LARGE, message="the API's answer is too large", status=status)
    try:
        doc = json.loads(data or b"{}")
    except ValueError:
        raise ApiError(
            code=BAD_RESPONSE, message="the API's answer is not JSON", status=status
        ) from None
    if not isinstance(doc, dict):
        raise ApiError(
            code=BAD_RESPONSE, message="the API's answer is not a JSON object", status=status
        )
    return doc


def _error(status: int, doc: dict[str, Any]) -> ApiError:
    code = str(doc.get("error") or f"http_{status}")
    message = str(doc.get("message") or f"HTTP {status}")
    return ApiError(code=code, message=message, status=status)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
