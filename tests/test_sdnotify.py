"""The service manager's notification protocol over a real unix datagram socket:
``relay.sdnotify`` and what the agent service sends through it (``inner_agent.service_status``)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from inner_agent.service_status import ServiceStatus
from relay.sdnotify import ENV, MAX_MESSAGE, Notifier, encode, socket_address


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(10)  # generous: the datagram is already queued when we read
    yield sock
    sock.close()


def received(sock: socket.socket) -> dict[str, str]:
    lines = sock.recv(65536).decode().splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_the_socket_comes_from_the_environment_which_children_do_not_inherit(
    manager: socket.socket,
) -> None:
    env = {ENV: manager.getsockname(), "OTHER": "x"}
    notifier = Notifier.from_environ(env)
    assert env == {"OTHER": "x"}
    assert notifier.enabled
    assert notifier.send(READY="1", STATUS="serving")
    assert received(manager) == {"READY": "1", "STATUS": "serving"}


def test_unset_or_relative_means_nowhere() -> None:
    assert not Notifier.from_environ({}).enabled
    assert not Notifier.from_environ({ENV: "relative/path"}).send(READY="1")
    assert socket_address("@abstract") == b"\0abstract"
    assert socket_address("") is None


def test_a_manager_that_went_away_is_not_the_services_problem(tmp_path: Path) -> None:
    assert Notifier(str(tmp_path / "gone")).send(READY="1") is False


def test_values_cannot_forge_keys_and_messages_stay_small(manager: socket.socket) -> None:
    with pytest.raises(ValueError, match="newline"):
        encode({"STATUS": "ok\nREADY=1"})
    with pytest.raises(ValueError, match="bad notification key"):
        encode({"status": "x"})
    notifier = Notifier(manager.getsockname())
    assert notifier.send(STATUS="x" * MAX_MESSAGE) is False


def test_the_service_says_ready_each_pass_each_event_and_stopping(manager: socket.socket) -> None:
    status = ServiceStatus(Notifier(manager.getsockname()))
    status.ready(["http://127.0.0.1:8787", "unix:/run/relay.sock"])
    assert received(manager) == {
        "READY": "1",
        "STATUS": "serving",
        "RELAY_LISTEN": "http://127.0.0.1:8787 unix:/run/relay.sock",
    }
    calls: list[str] = []
    after = status.after_scan(lambda: calls.append("first"))
    after()
    after()
    assert calls == ["first", "first"]
    assert received(manager)["RELAY_SCAN"] == "1"
    assert received(manager) == {"STATUS": "inbox pass 2 done", "RELAY_SCAN": "2"}
    status.event("bundle.applied", {"file": "a.bundle", "seq": 3})
    assert received(manager) == {
        "STATUS": "last event: bundle.applied",
        "RELAY_EVENT": 'bundle.applied {"file": "a.bundle", "seq": 3}',
    }
    status.event("bundle.rejected", {"file": "x" * MAX_MESSAGE})  # too big: the type only
    assert received(manager)["RELAY_EVENT"] == "bundle.rejected"
    status.audit_written(2)
    status.audit_written(3)
    assert received(manager) == {"RELAY_AUDITED": "2"}
    assert received(manager) == {"RELAY_AUDITED": "5"}
    status.stopping()
    assert received(manager) == {"STOPPING": "1", "STATUS": "stopping"}
