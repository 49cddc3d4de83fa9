"""The agent service around its API: unix socket and SO_PEERCRED, staleness and fail-closed
secrets, app registration, settings checks, lazy imports and process hardening."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from inner_agent.importer import Outcome
from inner_agent.inbox import COMPLETE, INCOMPLETE, UNKNOWN, Inbox, completeness
from tests.agent_daemon import Daemon, start_daemon
from tests.conftest import Pair, run_process

pytestmark = pytest.mark.slow  # runs `relay agent run` processes


def unix_client(path: Path) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://agent")


def unix_token(client: httpx.Client, daemon: Daemon) -> httpx.Response:
    return client.post(
        "/v1/oauth2/token", data={"grant_type": "client_credentials", **daemon.apps["web"]}
    )


def test_unix_socket_for_its_owner_only(tmp_path: Path) -> None:
    """Staleness on a clock: tests/test_agent_service_clock.py."""
    sock = tmp_path / "run" / "agent.sock"
    sock.parent.mkdir(mode=0o700)
    daemon = start_daemon(
        tmp_path,
        {"api.unix_socket": str(sock), "api.allowed_uids": str(os.getuid())},
        apps={"web": ["db/web/*"]},
    )
    try:
        assert stat.S_IMODE(sock.lstat().st_mode) == 0o600
        daemon.drop(daemon.publish({"db/web/critical": b"c-1"}))
        daemon.wait_event("bundle.applied")
        with unix_client(sock) as client:
            token = unix_token(client, daemon).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            assert client.get("/v1/secrets/db/web/critical", headers=auth).json()["value"] == "c-1"
            assert client.get("/v1/health").json()["stale"] is False
        limits = Path(f"/proc/{daemon.proc.pid}/limits").read_text()
        core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
        assert core.split()[4:6] == ["0", "0"]
    finally:
        daemon.stop()
    assert not sock.exists()


def test_unix_socket_refuses_a_uid_not_listed(tmp_path: Path) -> None:
    sock = tmp_path / "agent.sock"
    daemon = start_daemon(
        tmp_path,
        {
            "api.listen": "off",
            "api.unix_socket": str(sock),
            "api.allowed_uids": str(os.getuid() + 4242),
        },
    )
    try:
        assert sock.exists()  # bound before the agent notified READY=1
        with unix_client(sock) as client:
            response = unix_token(client, daemon)
            assert response.status_code == 403
            assert response.json()["error"] == "forbidden"
            assert client.get("/v1/health").status_code == 403
        denied = daemon.events("secret.denied")
        assert denied
        assert denied[-1]["reason"] == "uid_not_allowed"
        assert not daemon.events("token.issued")
    finally:
        assert daemon.stop(signal.SIGINT) < 5


def test_non_loopback_listen_is_refused_without_the_override(pair: Pair) -> None:
    assert pair.agent("config", "set", "api.listen", "0.0.0.0:8787").status == 0
    result = pair.agent("run")
    assert result.status == 2
    assert "non_loopback_listen" in result.err
    assert pair.agent("config", "set", "api.listen", "off").status == 0
    nothing = pair.agent("run")
    assert nothing.status == 2
    assert "nothing to serve" in nothing.err
    assert pair.agent("config", "set", "api.listen", "example.org:80").status == 2
    assert pair.agent("config", "set", "api.token_ttl", "soon").status == 2
    assert pair.agent("config", "set", "api.allowed_uids", "0,x").status == 2
    assert pair.agent("config", "set", "agent.fail_closed", "../*").status == 2


def test_app_add_list_rm(pair: Pair) -> None:
    added = pair.agent(
        "app", "add", "web", "--allow", "db/web/*", "--allow", "db/shared/**", "--json"
    )
    assert added.status == 0, added.err
    doc = json.loads(added.out)
    assert set(doc) == {"name", "client_id", "client_secret"}
    assert len(doc["client_secret"]) >= 43
    listed = pair.agent("app", "list", "--json")
    (app,) = json.loads(listed.out)
    assert app["name"] == "web"
    assert app["client_id"] == doc["client_id"]
    assert app["allow"] == ["db/shared/**", "db/web/*"]
    assert doc["client_secret"] not in listed.out
    assert "web" in pair.agent("app", "list").out
    store_bytes = b"".join(p.read_bytes() for p in pair.ag.rglob("*") if p.is_file())
    assert doc["client_secret"].encode() not in store_bytes
    again = pair.agent("app", "add", "web", "--allow", "x")
    assert again.status == 2
    assert "app_exists" in again.err
    assert "bad_pattern" in pair.agent("app", "add", "other", "--allow", "../x").err
    assert pair.agent("app", "rm", "web").status == 0
    assert json.loads(pair.agent("app", "list", "--json").out) == []
    missing = pair.agent("app", "rm", "web")
    assert missing.status == 2
    assert "not_found" in missing.err


def test_agent_get_does_not_import_the_service_stack(pair: Pair) -> None:
    pair.put("a/b", b"v")
    pair.gateway("grant", "plant7", "a/*")
    pair.export()
    pair.agent("import", str(pair.out))
    probe = (
        "import sys\n"
        "from relay.cli import main\n"
        "try:\n"
        f"    main(['agent', 'get', '--home', {str(pair.ag)!r}, 'a/b'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('fastapi', 'uvicorn', 'watchdog', 'apscheduler', 'prometheus_client')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "HEAVY []" in out


def test_the_process_is_not_dumpable_after_hardening() -> None:
    probe = (
        "from inner_agent.hardening import harden_process, is_dumpable\n"
        "print(is_dumpable(), harden_process(), is_dumpable())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.split() == ["True", "True", "False"]


def test_completeness_of_bundle_prefixes(pair: Pair) -> None:
    pair.put("a/b", b"v")
    pair.gateway("grant", "plant7", "a/*")
    (bundle,) = pair.export()
    data = bundle.read_bytes()
    assert completeness(data) == COMPLETE
    for cut in (0, 3, 12, 40, len(data) - 1):
        assert completeness(data[:cut]) == INCOMPLETE
    assert completeness(data + b"x") == UNKNOWN
    header_end = 12 + int.from_bytes(data[8:12], "big")
    assert completeness(data[:header_end], len(data)) == COMPLETE  # judged from header + size
    assert completeness(data[:header_end], len(data) - 1) == INCOMPLETE
    assert completeness(b"GARBAGE-not-a-bundle") == UNKNOWN


def test_a_truncated_file_that_stops_changing_is_judged_after_the_grace(pair: Pair) -> None:
    pair.put("a/b", b"v")
    pair.gateway("grant", "plant7", "a/*")
    (bundle,) = pair.export()
    inbox = pair.root / "inbox"
    inbox.mkdir()
    (inbox / "cut.bundle").write_bytes(bundle.read_bytes()[:100])
    now = [1000.0]
    handed: list[tuple[str, int]] = []
    reports: list[Outcome] = []

    def importer(name: str, data: bytes) -> Outcome:
        handed.append((name, len(data)))
        return Outcome(name, "rejected", "malformed", "truncated")

    inbox_ = Inbox(
        [inbox], importer, reports.append, 1 << 20, settle=1, give_up=60, clock=lambda: now[0]
    )
    assert inbox_.scan() == 1  # settling
    now[0] += 1
    assert inbox_.scan() == 59  # complete? no: waiting for the rest
    now[0] += 30
    inbox_.scan()
    assert handed == []
    now[0] += 30
    assert inbox_.scan() is None
    assert handed == [("cut.bundle", 100)]
    assert [r.code for r in reports] == ["malformed"]
    now[0] += 100
    inbox_.scan()
    assert len(handed) == 1  # once per content


def test_a_busy_port_is_a_clear_error(pair: Pair) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert pair.agent("config", "set", "api.listen", f"127.0.0.1:{port}").status == 0
        result = run_process("agent", "run", "--home", str(pair.ag))
    assert result.status == 2
    assert "listen_failed" in result.err
