"""The HTTP server's connection limit, in process on a loopback socket: when every connection is
busy being served, a newcomer gets a JSON 503 (never uvicorn's plain text); when some are only
waiting on their client, the newcomer is served and the oldest waiting one is closed."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from inner_agent.http_server import AgentServer, bind_tcp, make_server

LIMIT = 3


class Busy:
    """An ASGI app whose requests to /busy wait until released; others answer at once."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        import asyncio

        if scope["path"] == "/busy":
            self.entered.release()
            await asyncio.to_thread(self.release.wait)  # blocks a worker thread, not the loop
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def served() -> Iterator[tuple[AgentServer, Busy, str]]:
    app = Busy()
    server = make_server(app, read_timeout=30)
    server.config.http.max_connections = LIMIT  # type: ignore[union-attr]  # this server only
    sock = bind_tcp("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    started = threading.Event()
    startup = server.startup

    async def startup_then_say_so(sockets: list[socket.socket] | None = None) -> None:
        await startup(sockets)
        started.set()

    server.startup = startup_then_say_so  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert started.wait(30), "the server did not start"
        yield server, app, url
    finally:
        app.release.set()
        server.should_exit = True
        thread.join(10)
        sock.close()


def _busy_request(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"GET /busy HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


def test_a_newcomer_when_all_are_busy_gets_json_503(served: tuple[AgentServer, Busy, str]) -> None:
    _, app, url = served
    busy = [_busy_request(url) for _ in range(LIMIT)]
    try:
        for _ in busy:
            assert app.entered.acquire(timeout=10)
        response = httpx.get(f"{url}/other", timeout=10)
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"] == "overloaded"
        app.release.set()
        for sock in busy:
            assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    finally:
        for sock in busy:
            sock.close()


def test_a_newcomer_evicts_the_oldest_waiting_connection(
    served: tuple[AgentServer, Busy, str],
) -> None:
    _, _, url = served
    host, port = url.removeprefix("http://").split(":")
    waiting = [socket.create_connection((host, int(port)), timeout=10) for _ in range(LIMIT)]
    try:
        assert httpx.get(f"{url}/other", timeout=10).status_code == 200
        assert waiting[0].recv(1024) == b""  # the oldest was closed to make room
    finally:
        for sock in waiting:
            sock.close()
