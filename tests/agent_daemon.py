"""A real ``relay agent run`` process for scenario tests, and helpers to feed and query it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Pair, make_pair, run_relay

LISTENING = re.compile(r"api listening on (http://127\.0\.0\.1:\d+)")
START_TIMEOUT = 60.0


@dataclass
class Daemon:
    """A running agent service on a free loopback port."""

    pair: Pair
    inbox: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""
    apps: dict[str, dict[str, str]] = field(default_factory=dict)

    # -- process -------------------------------------------------------------------------------

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            match = LISTENING.search(self.log())
            if match:
                self.url = match.group(1)
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"agent did not start: {self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> float:
        """Signal the agent; returns how long it took to exit (asserting exit status 0)."""
        if self.proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.proc.send_signal(sig)
        status = self.proc.wait(timeout=15)
        took = time.monotonic() - started
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

    def wait_event(self, event_type: str, count: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events(event_type)) < count:
            assert time.monotonic() < deadline, f"no {event_type} event: {self.log()}"
            time.sleep(0.05)

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
        """Poll the API until ``path`` reads ``value``; returns how long it took."""
        token = self.token(app)
        started = time.monotonic()
        with self.client() as client:
            while True:
                response = client.get(
                    f"/v1/secrets/{path}", headers={"Authorization": f"Bearer {token}"}
                )
                took = time.monotonic() - started
                if response.status_code == 200 and response.json()["value"] == value.decode():
                    return took
                assert took < within, f"{path} not readable after {took:.2f}s: {self.log()}"
                time.sleep(0.02)

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
    log_path = root / "agent.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    full_env.update(env or {})
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relay", "agent", "run", "--home", str(pair.ag)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=full_env,
        )
    daemon = Daemon(pair, inbox, proc, log_path, apps=creds)
    if config["api.listen"] != "off":
        daemon.wait_listening()
    return daemon
