"""Slow clients cannot hold the local API's connection limit (loopback only, bounded in count
and time): every request must arrive whole within ``api.read_timeout``, and a connection at the
limit closes the one that has waited longest on its client."""

from __future__ import annotations

import os
import selectors
import socket
import time
from collections.abc import Iterator

import pytest

from inner_agent.http_server import MAX_CONNECTIONS
from tests.agent_daemon import Daemon, start_daemon

READ_TIMEOUT = 5.0
HALF_OPEN = MAX_CONNECTIONS + 88  # more than the limit
VALUE = f"PLANTED-slow-{os.urandom(8).hex()}".encode()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    daemon = start_daemon(
        tmp_path_factory.mktemp("slow"),
        {"api.token_ttl": "1h", "api.read_timeout": f"{READ_TIMEOUT:g}s"},
        apps={"web": ["db/web/*"]},
    )
    daemon.drop(daemon.publish({"db/web/password": VALUE}))
    daemon.wait_event("bundle.applied")
    yield daemon
    assert daemon.stop() < 5
    assert VALUE not in daemon.log().encode()


def _address(daemon: Daemon) -> tuple[str, int]:
    host, port = daemon.url.removeprefix("http://").split(":")
    assert host == "127.0.0.1"  # loopback only
    return host, int(port)


def _half_open(daemon: Daemon, count: int, start: bytes) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection(_address(daemon), timeout=10)
        if start:
            sock.sendall(start)
        socks.append(sock)
    return socks


def _wait_all_closed(socks: list[socket.socket], within: float) -> dict[str, int]:
    """Wait until the server closed every socket; count how each ended."""
    outcome = {"408": 0, "closed": 0}
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    deadline = time.monotonic() + within
    received: dict[socket.socket, bytes] = {}
    while selector.get_map():
        left = deadline - time.monotonic()
        assert left > 0, f"{len(selector.get_map())} slow connections still open"
        for key, _ in selector.select(left):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if chunk:
                received[sock] = received.get(sock, b"") + chunk
                continue
            selector.unregister(sock)
            answer = received.get(sock, b"")
            outcome["408" if answer.startswith(b"HTTP/1.1 408") else "closed"] += 1
            if answer:
                assert b'"error":"request_timeout"' in answer, answer
            sock.close()
    return outcome


def test_half_open_connections_cannot_hold_the_limit(agent: Daemon) -> None:
    started = time.monotonic()
    slow = _half_open(agent, HALF_OPEN, b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    try:
        # all still within their deadline: the server is at its limit now
        assert time.monotonic() - started < READ_TIMEOUT - 1
        token = agent.token("web")  # at the limit: the oldest slow connection makes room
        response = agent.read("db/web/password", token)
        assert response.status_code == 200
        assert response.json()["value"] == VALUE.decode()
        outcome = _wait_all_closed(slow, within=READ_TIMEOUT + 20)
    finally:
        for sock in slow:
            sock.close()
    assert sum(outcome.values()) == HALF_OPEN
    assert outcome["408"] > 0  # the ones never evicted were timed out with an answer
    assert time.monotonic() - started < READ_TIMEOUT + 30
    assert agent.read("db/web/password", token).status_code == 200


def test_a_body_sent_too_slowly_is_408(agent: Daemon) -> None:
    head = (
        b"POST /v1/oauth2/token HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\n"
        b"grant_type=client_"
    )
    (sock,) = _half_open(agent, 1, head)
    outcome = _wait_all_closed([sock], within=READ_TIMEOUT + 10)
    assert outcome == {"408": 1, "closed": 0}
    assert "Traceback" not in agent.log()


def test_a_silent_connection_is_closed(agent: Daemon) -> None:
    silent = _half_open(agent, 3, b"")
    started = time.monotonic()
    outcome = _wait_all_closed(silent, within=READ_TIMEOUT + 10)
    assert outcome == {"408": 0, "closed": 3}
    assert time.monotonic() - started >= READ_TIMEOUT - 0.5
