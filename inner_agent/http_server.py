"""Serving the API with uvicorn on a loopback TCP socket and/or a unix socket.

The sockets are bound here, so the daemon can log the real address before serving. The unix
socket is 0600 when only its owner may use it, and 0666 when ``api.allowed_uids`` names other
uids: connections on it carry the peer's uid (``SO_PEERCRED``) into the ASGI scope, where
:class:`inner_agent.api.Guard` checks it against ``api.allowed_uids``.

Slow clients cannot hold the connection limit: a client has ``api.read_timeout`` to send a whole
request (headers and body; 408 after that), and a new connection at the limit closes the oldest
one still waiting on its client rather than being refused. Only when every connection is being
served is a newcomer answered 503, as JSON like every other error.
Signals are the daemon's business: this server never installs or re-raises them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from inner_agent.api import MAX_HEADER_BYTES, PEER_UID_KEY, error_response
from relay.codes import BAD_REQUEST, LISTEN_FAILED, OVERLOADED, REQUEST_TIMEOUT
from relay.errors import UsageError

UNKNOWN_UID = -1  # never in api.allowed_uids: an allow-list then refuses the peer
MAX_CONNECTIONS = 512
DEFAULT_READ_TIMEOUT = 10.0


def peer_uid(sock: Any) -> int | None:
    """The uid of the process at the other end of a unix socket (``None`` for TCP)."""
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    if not hasattr(socket, "SO_PEERCRED"):  # not Linux: fail closed when uids are listed
        return UNKNOWN_UID
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


_Events = list[h11.Response | h11.Data | h11.EndOfMessage]
_OVERLOADED = error_response(
    503, OVERLOADED, "too many connections; retry shortly", {"connection": "close"}
)


def _json_error(status: int, reason: bytes, code: str, message: str) -> _Events:
    body = json.dumps({"error": code, "message": message}, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"connection", b"close"),
    ]
    return [
        h11.Response(status_code=status, headers=headers, reason=reason),
        h11.Data(data=body),
        h11.EndOfMessage(),
    ]


class PeerAwareH11(H11Protocol):
    """uvicorn's h11 protocol, plus the unix peer's uid in the scope, JSON parse errors, a
    deadline for reading each request and the connection limit (see the module docstring)."""

    read_timeout = DEFAULT_READ_TIMEOUT
    max_connections = MAX_CONNECTIONS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._read_deadline: asyncio.TimerHandle | None = None
        self.waiting_since = self.loop.time()
        self._arm_read_deadline()
        if len(self.connections) > self.max_connections and not self._evict_a_slow_client():
            self.app = _OVERLOADED
            return
        uid = peer_uid(transport.get_extra_info("socket"))
        if uid is not None:
            inner = self.app

            async def app(scope: Any, receive: Any, send: Any) -> None:
                scope[PEER_UID_KEY] = uid
                await inner(scope, receive, send)

            self.app = app

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.DONE:  # the whole request is in: the app's turn
            self._disarm_read_deadline()
        elif self._read_deadline is None and not self.transport.is_closing():
            self.waiting_since = self.loop.time()
            self._arm_read_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_read_deadline()
        super().connection_lost(exc)

    def waiting_on_client(self) -> bool:
        """Whether this connection waits for its client (nothing is being served on it)."""
        return self.conn.their_state is not h11.DONE

    def _arm_read_deadline(self) -> None:
        self._read_deadline = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _disarm_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.conn.their_state is h11.DONE or self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
            self._close()  # an idle keep-alive connection, or one that never sent a byte
            return
        message = "the request was not sent in full in time"
        self._answer(_json_error(408, b"Request Timeout", REQUEST_TIMEOUT, message))

    def _evict_a_slow_client(self) -> bool:
        """Close the connection that has waited longest on its client; ``False`` if every
        connection is being served."""
        slow = [c for c in self.connections if isinstance(c, PeerAwareH11) and c is not self]
        slow = [c for c in slow if c.waiting_on_client() and not c.transport.is_closing()]
        if not slow:
            return False
        min(slow, key=lambda c: c.waiting_since)._close()
        return True

    def _close(self) -> None:
        self._disarm_read_deadline()
        self.transport.close()

    def _answer(self, events: _Events) -> None:
        for event in events:
            with contextlib.suppress(h11.LocalProtocolError):
                self.transport.write(self.conn.send(event))
        self._close()

    def send_400_response(self, msg: str) -> None:
        message = "invalid or oversized HTTP request"
        self._answer(_json_error(400, b"Bad Request", BAD_REQUEST, message))


class AgentServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its owner (who sets ``should_exit``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_server(app: Any, read_timeout: float = DEFAULT_READ_TIMEOUT) -> AgentServer:
    """A server for ``app`` with relay's limits and no access log."""

    class Protocol(PeerAwareH11):
        pass

    Protocol.read_timeout = read_timeout
    config = uvicorn.Config(
        app,
        http=Protocol,
        lifespan="off",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=1,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        limit_concurrency=None,  # PeerAwareH11 keeps the limit (its 503 is JSON)
    )
    return AgentServer(config)


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio then sets TCP_NODELAY on accepted connections (with proto 0
    # it does not, and Nagle plus delayed ACKs add 40 ms to every response).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror}", code=LISTEN_FAILED
        ) from None
    sock.set_inheritable(False)
    return sock


def bind_unix(path: Path, allowed_uids: frozenset[int] = frozenset()) -> socket.socket:
    """A listening unix socket at ``path``; a stale socket file is replaced, any other file is
    refused. Mode 0600 when only the owner may connect (``allowed_uids`` empty or just our
    uid), 0666 when other uids are allowed (each connection's uid is then checked)."""
    if path.is_symlink() or (path.exists() and not path.is_socket()):
        raise UsageError(f"{path} exists and is not a socket", code=LISTEN_FAILED)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {path}: {exc.strerror}", code=LISTEN_FAILED) from None
    finally:
        os.umask(old)
    path.chmod(socket_mode(allowed_uids))
    sock.listen(128)
    return sock


def socket_mode(allowed_uids: frozenset[int]) -> int:
    """The unix socket's mode for ``api.allowed_uids``."""
    return 0o600 if allowed_uids <= {os.getuid()} else 0o666


def describe(sock: socket.socket) -> str:
    """``http://HOST:PORT`` or ``unix:PATH`` of a listening socket."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
