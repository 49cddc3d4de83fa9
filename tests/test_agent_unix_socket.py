"""The unix socket's mode follows ``api.allowed_uids`` and the SO_PEERCRED check stays: a
client running as an allowed uid gets a token and a secret, one running as another uid is
refused. The clients are child processes that switch uid (needs root)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from inner_agent.http_server import socket_mode
from tests.agent_daemon import Daemon, start_daemon

ALLOWED_UID = 65534  # nobody; any uid works, no account is needed to run as one
OTHER_UID = 65533
VALUE = f"PLANTED-uds-{os.urandom(8).hex()}"

# stdlib only: the child may run as a uid that cannot read this test's virtualenv
CLIENT = r"""
import base64, http.client, json, socket, sys
path = sys.argv[1]
creds = json.loads(sys.stdin.read())

class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)

def ask(method, url, body=None, headers={}):
    conn = Unix("agent")
    conn.request(method, url, body=body, headers=headers)
    answer = conn.getresponse()
    return answer.status, json.loads(answer.read() or b"null")

basic = base64.b64encode(f"{creds['client_id']}:{creds['client_secret']}".encode()).decode()
status, doc = ask(
    "POST", "/v1/oauth2/token", "grant_type=client_credentials",
    {"Authorization": "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded"},
)
result = {"token_status": status, "token_error": doc.get("error")}
if status == 200:
    auth = {"Authorization": "Bearer " + doc["access_token"]}
    result["read_status"], body = ask("GET", "/v1/secrets/db/web/password", headers=auth)
    result["value"] = body.get("value")
print(json.dumps(result))
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching uid needs root")


def child_python() -> str:
    system = Path("/usr/bin/python3")
    return str(system) if system.exists() else sys.executable


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Path]]:
    folder = Path(tempfile.mkdtemp(prefix="relay-uds-"))  # not under a 0700 pytest folder
    folder.chmod(0o711)
    sock = folder / "agent.sock"
    daemon = start_daemon(
        tmp_path_factory.mktemp("uds"),
        {
            "api.unix_socket": str(sock),
            "api.allowed_uids": f"{os.getuid()},{ALLOWED_UID}",
            "api.token_ttl": "1h",
        },
        apps={"web": ["db/web/*"]},
    )
    try:
        daemon.drop(daemon.publish({"db/web/password": VALUE.encode()}))
        daemon.wait_event("bundle.applied")
        yield daemon, sock
    finally:
        daemon.stop()
        folder.rmdir()  # the agent removed its socket


def run_client_as(uid: int, daemon: Daemon, sock: Path) -> dict[str, object]:
    done = subprocess.run(  # credentials go through stdin, never argv
        [child_python(), "-I", "-c", CLIENT, str(sock)],
        check=False,
        input=json.dumps(daemon.apps["web"]),
        capture_output=True,
        text=True,
        timeout=60,
        user=uid,
        group=uid,
        extra_groups=[],
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_socket_mode_follows_allowed_uids(agent: tuple[Daemon, Path]) -> None:
    _, sock = agent
    assert stat.S_IMODE(sock.lstat().st_mode) == 0o666
    assert socket_mode(frozenset()) == 0o600
    assert socket_mode(frozenset({os.getuid()})) == 0o600
    assert socket_mode(frozenset({os.getuid(), ALLOWED_UID})) == 0o666


def test_an_allowed_uid_reads_a_secret(agent: tuple[Daemon, Path]) -> None:
    daemon, sock = agent
    result = run_client_as(ALLOWED_UID, daemon, sock)
    assert result == {"token_status": 200, "token_error": None, "read_status": 200, "value": VALUE}


def test_a_uid_not_listed_is_refused(agent: tuple[Daemon, Path]) -> None:
    daemon, sock = agent
    issued = len(daemon.events("token.issued"))
    result = run_client_as(OTHER_UID, daemon, sock)
    assert result == {"token_status": 403, "token_error": "forbidden"}
    assert {"app": None, "path": None, "reason": "uid_not_allowed", "uid": OTHER_UID} in (
        daemon.events("secret.denied")
    )
    assert len(daemon.events("token.issued")) == issued
