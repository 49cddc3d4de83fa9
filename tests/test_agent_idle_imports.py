"""``relay agent run``, idle, holds only what serving and importing need: neither FastAPI nor
pydantic (the API runs on Starlette and serves a generated OpenAPI document), nor SQLAlchemy
(reads, the activation job and the receive transaction use raw SQLCipher connections; the engine
is made only for the CLI's writers), nor the pieces that a configured feature would load (the
diode receiver, the SFTP stack, templates). Imports are most of the idle daemon's memory
(docs/adr/0018-lean-agent.md); this test names modules, not megabytes. The bundle itself is
decoded and applied by a short-lived child process (docs/adr/0022-apply-in-a-child.md): the
probe fails if the service applied it in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inner_agent.api_document import DOCUMENT
from inner_agent.api_schema import render_document
from tests.conftest import make_pair

# What an idle agent (an inbox, the TCP API, no diode, no [[hooks]] or [[exec]]) must not import.
FORBIDDEN = (
    "sqlalchemy",
    "alembic",
    "fastapi",
    "pydantic",
    "pydantic_core",
    "opentelemetry",
    "inner_agent.api_schema",
    "paramiko",
    "zfec",
    "jinja2",
    "relay.diode.receiver",
)

# Runs `relay agent run` in this interpreter; once the agent has applied the bundle waiting in
# its inbox and the API has answered a health request and a token request (with credentials of
# no app), it records the loaded modules and stops the agent as an operator would (SIGTERM).
PROBE = """
import http.client, json, logging, os, re, signal, sys, threading
from relay.entry import main

listening = threading.Event()
applied = threading.Event()
where = {}

class Listening(logging.Handler):
    def emit(self, record):
        message = record.getMessage()
        found = re.search(r"api listening on http://([0-9.]+):([0-9]+)", message)
        if found:
            where["host"], where["port"] = found.group(1), int(found.group(2))
            listening.set()
        if message.startswith("event bundle.applied"):
            applied.set()

for name in ("relay.agent", "relay.events"):
    logging.getLogger(name).addHandler(Listening())

import inner_agent.importer as importer  # the service must apply in a child (ADR 0022)
in_process = []
applying = importer.AgentImporter.import_bytes
def counted(self, *args, **kwargs):
    in_process.append(1)
    return applying(self, *args, **kwargs)
importer.AgentImporter.import_bytes = counted

def watch():
    listening.wait()
    applied.wait()
    conn = http.client.HTTPConnection(where["host"], where["port"], timeout=60)
    conn.request("GET", "/v1/health")
    health = conn.getresponse()
    health.read()
    body = "grant_type=client_credentials&client_id=app-000000000000000000000000&client_secret=x"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    conn.request("POST", "/v1/oauth2/token", body=body, headers=form)
    token = conn.getresponse()
    token.read()
    with open(sys.argv[1], "w") as f:
        json.dump({"status": [health.status, token.status], "modules": sorted(sys.modules),
                   "in_process": len(in_process)}, f)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=watch, daemon=True).start()
sys.exit(main(["agent", "run", "--home", sys.argv[2]]))
"""


def test_the_served_document_is_the_generated_one() -> None:
    assert render_document().encode("utf-8") == DOCUMENT, (
        "run `python -m inner_agent.api_schema` to regenerate inner_agent/api_document.py"
    )


@pytest.mark.slow
def test_an_agent_that_applied_a_bundle_imports_neither_sqlalchemy_nor_fastapi(
    tmp_path: Path,
) -> None:
    pair = make_pair(tmp_path)
    pair.put("db/web/password", b"idle-probe-value")
    assert pair.gateway("grant", "plant7", "db/**").status == 0
    (bundle,) = pair.export()
    inbox = tmp_path / "inbox"
    inbox.mkdir(mode=0o700)
    (inbox / bundle.name).write_bytes(bundle.read_bytes())
    for key, value in (("agent.inbox", str(inbox)), ("api.listen", "127.0.0.1:0")):
        assert pair.agent("config", "set", key, value).status == 0
    report = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), str(pair.ag)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(report.read_text())
    assert seen["status"] == [200, 401]
    assert seen["in_process"] == 0  # the bundle was decoded and applied by a child process
    loaded = set(seen["modules"])
    assert "starlette" in loaded  # the probe saw a serving agent
    heavy = sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN or m in FORBIDDEN)
    assert heavy == []
