"""A real ``relay agent run`` process for scenario tests, and helpers to feed and query it.

The tests synchronise on what the agent tells its service manager (``NOTIFY_SOCKET``, see
:mod:`inner_agent.service_status`): ``READY=1`` with the API's address, a ``RELAY_SCAN=`` after
each inbox pass and a ``RELAY_EVENT=`` per event. Every wait blocks on the next notification
with a generous timeout; none polls on a sleep."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.conftest import Pair, make_pair, run_relay

START_TIMEOUT = 60.0
T = TypeVar("T")
Message = dict[str, str]


class Notifications:
    """The datagrams a service sends to its ``NOTIFY_SOCKET``, gathered by a thread; waits block
    on a condition the thread signals."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[Message] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while True:
            data = self.sock.recv(65536)
            if not data:  # close(): an empty datagram
                return
            lines = data.decode("utf-8", "replace").splitlines()
            self.add(dict(line.split("=", 1) for line in lines if "=" in line))

    def add(self, message: Message) -> None:
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    def wait_for(self, found: Callable[[list[Message]], T | None], timeout: float) -> T | None:
        """The first truthy ``found(messages)``, re-checked at each new message; ``None`` if
        ``timeout`` passes first."""
        with self._changed:
            return self._changed.wait_for(lambda: found(self.messages), timeout)

    def close(self) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as waker:
            waker.sendto(b"", str(self.path))
        self._thread.join(10)
        self.sock.close()


def _scans(messages: list[Message]) -> int:
    return max((int(m["RELAY_SCAN"]) for m in messages if "RELAY_SCAN" in m), default=0)


def _events(messages: list[Message], event_type: str) -> list[str]:
    return [
        m["RELAY_EVENT"]
        for m in messages
        if m.get("RELAY_EVENT", "").split(" ", 1)[0] == event_type
    ]


def _exited(messages: list[Message]) -> str | None:
    return next((m["EXITED"] for m in messages if "EXITED" in m), None)


@dataclass
class Daemon:
    """A running agent service on a free loopback port."""

    pair: Pair
    inbox: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    notified: Notifications
    url: str = ""
    apps: dict[str, dict[str, str]] = field(default_factory=dict)

    # -- process -------------------------------------------------------------------------------

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_listening(self) -> None:
        """Wait for ``READY=1`` (or the process's exit) and take the API's address from it."""
        ready = self.notified.wait_for(
            lambda ms: next((m for m in ms if m.get("READY") == "1" or "EXITED" in m), None),
            START_TIMEOUT,
        )
        assert ready is not None, f"agent did not start: {self.log()}"
        assert "EXITED" not in ready, f"agent exited {ready['EXITED']}: {self.log()}"
        urls = [a for a in ready.get("RELAY_LISTEN", "").split() if a.startswith("http://")]
        self.url = urls[0] if urls else ""

    def notified_events(self, event_type: str) -> int:
        """How many events of ``event_type`` the agent notified so far."""
        return len(_events(self.notified.messages, event_type))

    def wait_until(self, check: Callable[[], T], timeout: float = 30.0, what: str = "") -> T:
        """The first truthy ``check()``, re-run now and at each notification from the agent
        (every inbox pass, event and audit batch sends one)."""
        result: list[T] = []

        def done(messages: list[Message]) -> bool:
            value = check()
            if value:
                result.append(value)
                return True
            return _exited(messages) is not None

        self.notified.wait_for(done, timeout)
        assert result, f"timed out waiting for {what or check}: {self.log()}"
        return result[0]

    def wait_log(self, text: str, timeout: float = 30.0) -> None:
        """Wait until the agent's log holds ``text``."""
        self.wait_until(lambda: text in self.log(), timeout, repr(text))

    def scans(self) -> int:
        """Inbox passes completed so far."""
        return _scans(self.notified.messages)

    def wait_scans(self, more: int = 2, timeout: float = 30.0) -> None:
        """Wait until ``more`` further inbox passes completed: the last one began after this
        call, so it saw every file as it is now."""
        target = self.scans() + more
        done = self.notified.wait_for(lambda ms: _scans(ms) >= target or _exited(ms), timeout)
        assert done is True, f"no inbox pass {target}: {self.log()}"

    def stop(self, sig: int = signal.SIGTERM) -> float:
        """Signal the agent; returns how long it took to exit (asserting exit status 0)."""
        if self.proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.proc.send_signal(sig)
        status = self.proc.wait(timeout=15)
        took = time.monotonic() - started
        self.notified.close()
        assert status == 0, self.log()
        assert "Traceback" not in self.log(), self.log()
        return took

    def events(self, event_type: str) -> list[dict[str, Any]]:
        """The fields of every logged event of ``event_type``."""
        found = []
        for line in self.log().splitlines():
            marker = f" event {event_type} "
            if marker in line:
                found.append(json.loads(line.split(marker, 1)[1]))
        return found

    def wait_event(self, event_type: str, count: int = 1, timeout: float = 30.0) -> None:
        """Wait until the agent notified ``count`` events of ``event_type``."""
        done = self.notified.wait_for(
            lambda ms: len(_events(ms, event_type)) >= count or _exited(ms), timeout
        )
        assert done is True, f"no {event_type} event: {self.log()}"

    # -- API -----------------------------------------------------------------------------------

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def token(self, app: str = "web") -> str:
        creds = self.apps[app]
        response = httpx.post(
            f"{self.url}/v1/oauth2/token",
            data={"grant_type": "client_credentials", **creds},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def read(self, path: str, token: str) -> httpx.Response:
        return httpx.get(
            f"{self.url}/v1/secrets/{path}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )

    def wait_value(self, path: str, value: bytes, within: float, app: str = "web") -> float:
        """Read ``path`` through the API now and after each notification from the agent until
        it reads ``value``; returns how long it took."""
        token = self.token(app)
        started = time.monotonic()
        with self.client() as client:
            while True:
                seen = len(self.notified.messages)
                response = client.get(
                    f"/v1/secrets/{path}", headers={"Authorization": f"Bearer {token}"}
                )
                took = time.monotonic() - started
                if response.status_code == 200 and response.json()["value"] == value.decode():
                    return took
                assert took < within, f"{path} not readable after {took:.2f}s: {self.log()}"
                self.notified.wait_for(lambda ms, n=seen: len(ms) > n, within - took)  # type: ignore[misc]

    def raw(self, request: bytes) -> bytes:
        """Send raw bytes to the API and return the raw answer (for malformed requests)."""
        host, port = self.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(request)
            chunks = []
            while True:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)

    # -- bundles -------------------------------------------------------------------------------

    def publish(self, values: dict[str, bytes]) -> Path:
        """Put ``values`` on the gateway, export, and return the new bundle (not yet in the
        inbox)."""
        for path, value in values.items():
            self.pair.put(path, value)
        before = set(self.pair.out.glob("*.bundle")) if self.pair.out.exists() else set()
        self.pair.export()
        (new,) = set(self.pair.out.glob("*.bundle")) - before
        return new

    def drop(self, bundle: Path) -> Path:
        """Move ``bundle`` into the inbox atomically (a rename); returns its inbox path."""
        temp = self.inbox / f".{bundle.name}.part"
        shutil.copyfile(bundle, temp)
        final = self.inbox / bundle.name
        temp.rename(final)
        return final


def start_daemon(
    root: Path,
    settings: dict[str, str] | None = None,
    apps: dict[str, list[str]] | None = None,
    env: dict[str, str] | None = None,
) -> Daemon:
    """Create a gateway/agent pair under ``root`` and start ``relay agent run`` on it."""
    pair = make_pair(root)
    assert pair.gateway("grant", "plant7", "**").status == 0
    inbox = root / "inbox"
    inbox.mkdir(mode=0o700)
    config = {"agent.inbox": str(inbox), "api.listen": "127.0.0.1:0", **(settings or {})}
    for key, value in config.items():
        assert pair.agent("config", "set", key, value).status == 0
    creds: dict[str, dict[str, str]] = {}
    for name, patterns in (apps if apps is not None else {"web": ["db/web/**"]}).items():
        allow = [arg for p in patterns for arg in ("--allow", p)]
        result = run_relay("agent", "app", "add", "--home", str(pair.ag), name, *allow, "--json")
        assert result.status == 0, result.err
        doc = json.loads(result.out)
        creds[name] = {"client_id": doc["client_id"], "client_secret": doc["client_secret"]}
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    full_env.update(env or {})
    daemon = spawn_agent(pair, inbox, root / "agent.log", full_env, creds)
    daemon.wait_listening()
    return daemon


def spawn_agent(
    pair: Pair, inbox: Path, log_path: Path, env: dict[str, str], apps: dict[str, dict[str, str]]
) -> Daemon:
    """Start ``relay agent run`` on ``pair`` with a notification socket of its own (not yet
    waited on)."""
    notified = Notifications(log_path.with_suffix(".notify"))
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relay", "agent", "run", "--home", str(pair.ag)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env={**env, "NOTIFY_SOCKET": str(notified.path)},
        )

    def reap() -> None:  # an exit is an event too: no wait outlives the process
        notified.add({"EXITED": str(proc.wait())})

    threading.Thread(target=reap, daemon=True).start()
    return Daemon(pair, inbox, proc, log_path, notified, apps=apps)
