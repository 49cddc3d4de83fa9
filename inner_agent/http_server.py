"""Serving the API with uvicorn on a loopback TCP socket and/or a unix socket.

The sockets are bound here (the unix socket 0600, in a private folder), so the daemon can log the
real address before serving. Connections on the unix socket carry the peer's uid (``SO_PEERCRED``)
into the ASGI scope, where :class:`inner_agent.api.Guard` checks it against ``api.allowed_uids``.
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

from inner_agent.api import MAX_HEADER_BYTES, PEER_UID_KEY
from relay.codes import LISTEN_FAILED
from relay.errors import UsageError

UNKNOWN_UID = -1  # never in api.allowed_uids: an allow-list then refuses the peer


def peer_uid(sock: Any) -> int | None:
    """The uid of the process at the other end of a unix socket (``None`` for TCP)."""
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    if not hasattr(socket, "SO_PEERCRED"):  # not Linux: fail closed when uids are listed
        return UNKNOWN_UID
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class PeerAwareH11(H11Protocol):
    """uvicorn's h11 protocol, plus the unix peer's uid in the scope and JSON parse errors."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        uid = peer_uid(transport.get_extra_info("socket"))
        if uid is not None:
            inner = self.app

            async def app(scope: Any, receive: Any, send: Any) -> None:
                scope[PEER_UID_KEY] = uid
                await inner(scope, receive, send)

            self.app = app

    def send_400_response(self, msg: str) -> None:
        body = json.dumps(
            {"error": "bad_request", "message": "invalid or oversized HTTP request"},
            separators=(",", ":"),
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"cache-control", b"no-store"),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            with contextlib.suppress(h11.LocalProtocolError):
                self.transport.write(self.conn.send(event))
        self.transport.close()


class AgentServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its owner (who sets ``should_exit``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_server(app: Any) -> AgentServer:
    """A server for ``app`` with relay's limits and no access log."""
    config = uvicorn.Config(
        app,
        http=PeerAwareH11,
        lifespan="off",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=1,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        limit_concurrency=512,
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


def bind_unix(path: Path) -> socket.socket:
    """A listening unix socket at ``path``, mode 0600; a stale socket file is replaced, any
    other file is refused."""
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
    path.chmod(0o600)
    sock.listen(128)
    return sock


def describe(sock: socket.socket) -> str:
    """``http://HOST:PORT`` or ``unix:PATH`` of a listening socket."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
