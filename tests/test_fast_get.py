"""``relay agent get`` starts without click: the fast entry imports only what reading one
secret and appending one audit record need, and behaves exactly like the click command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inner_agent.audit import AgentAudit
from inner_agent.get_command import get_value, who
from relay.entry import parse_agent_get
from relay.home import Home
from tests.children import child_env
from tests.conftest import Pair

# Heavy modules `agent get` must never import (click, the servers, the transports, the
# syslog stack of the audit sinks, the settings parser when the home has no settings).
FORBIDDEN = (
    "click",
    "sqlalchemy",
    "uvicorn",
    "fastapi",
    "starlette",
    "paramiko",
    "zfec",
    "jinja2",
    "apscheduler",
    "relay.audit.sinks",
    "relay.audit.formats",
    "logging.handlers",
    "nacl.pwhash",
)
# Nor, for a home without settings, dataclasses and the inspect machinery it imports (the
# records on the path use relay.frozen; the settings parser still uses dataclasses).
FORBIDDEN_PLAIN = (*FORBIDDEN, "dataclasses", "inspect")

PROBE = """
import json, sys
from relay.entry import main
try:
    main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code
with open(sys.argv[1], "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""

CLICK_PATH = "import sys; from relay.cli import main; sys.argv[0] = 'relay'; main()"


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return child_env(extra)


def _probe(tmp_path: Path, *args: str) -> tuple[int, set[str], bytes]:
    report = tmp_path / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *args],
        capture_output=True,
        env=_env(),
        timeout=120,
        check=False,
    )
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()
    doc = json.loads(report.read_text())
    return int(doc["code"] or 0), set(doc["modules"]), proc.stdout


def _loaded(modules: set[str], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in modules)


def _granted(pair: Pair, path: str, value: bytes, *extra: str) -> None:
    pair.put(path, value, *extra)
    pair.gateway("grant", "plant7", path)
    pair.export()
    assert pair.agent("import", str(pair.out)).status == 0


def test_agent_get_imports_no_heavy_module(pair: Pair, tmp_path: Path) -> None:
    _granted(pair, "db/fast", b"fast-value-8c1d")
    code, modules, out = _probe(tmp_path, "agent", "get", "--home", str(pair.ag), "db/fast")
    assert (code, out) == (0, b"fast-value-8c1d\n")
    assert [m for m in FORBIDDEN_PLAIN if _loaded(modules, m)] == []
    assert not _loaded(modules, "tomllib")  # no settings file: no settings parser
    code, modules, _ = _probe(tmp_path, "agent", "get", "--home", str(pair.ag), "db/none")
    assert code != 0
    assert [m for m in FORBIDDEN_PLAIN if _loaded(modules, m)] == []


def test_agent_get_with_settings_but_no_sink_stays_light(pair: Pair, tmp_path: Path) -> None:
    _granted(pair, "db/fast", b"v")
    assert pair.agent("config", "set", "audit.valid_for", "30d").status == 0
    code, modules, _ = _probe(tmp_path, "agent", "get", "--home", str(pair.ag), "db/fast")
    assert code == 0
    assert [m for m in FORBIDDEN if _loaded(modules, m)] == []


def _both(args: list[str], env: dict[str, str] | None = None) -> list[tuple[int, bytes, bytes]]:
    """The same command through the fast entry and through the click CLI."""
    results = []
    for head in ([sys.executable, "-m", "relay"], [sys.executable, "-c", CLICK_PATH]):
        proc = subprocess.run(
            [*head, *args], capture_output=True, env=_env(env), timeout=120, check=False
        )
        results.append((proc.returncode, proc.stdout, proc.stderr))
    return results


def test_fast_and_click_paths_behave_identically(pair: Pair, tmp_path: Path) -> None:
    _granted(pair, "db/same", b"same-value-71aa")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases: list[tuple[list[str], dict[str, str] | None]] = [
        (["agent", "get", "--home", str(pair.ag), "db/same"], None),
        (["agent", "get", "db/same", f"--home={pair.ag}"], None),
        (["agent", "get", "db/same"], {"RELAY_HOME": str(pair.ag)}),
        (["agent", "get", "--home", str(pair.ag), "db/none"], None),
        (["agent", "get", "--home", str(pair.gw), "db/same"], None),
        (["agent", "get", "--home", str(empty), "db/same"], None),
        (["agent", "get", "--home", str(pair.ag)], None),
        (["agent", "get", "--home", str(pair.ag), "a", "b"], None),
        (["agent", "get", "--home", str(pair.ag), "--bogus", "db/same"], None),
        (["agent", "get", "--home", str(pair.ag / "identity.key"), "db/same"], None),
        (["agent", "get", "db/same"], {"XDG_DATA_HOME": str(tmp_path / "xdg")}),
        (["agent", "get", "db/same"], {"RELAY_HOME": ""}),
    ]
    for args, env in cases:
        fast, slow = _both(args, env)
        assert fast == slow, (args, fast, slow)
    ok, _ = _both(["agent", "get", "--home", str(pair.ag), "db/same"])
    assert ok == (0, b"same-value-71aa\n", b"")
    missing, _ = _both(["agent", "get", "--home", str(pair.ag), "db/none"])
    assert missing[0] != 0
    assert missing[2].startswith(b"relay: error: not_found: ")
    wrong, _ = _both(["agent", "get", "--home", str(pair.gw), "db/same"])
    assert wrong[2].startswith(b"relay: error: wrong_home: ")


def test_fast_get_audits_reads_and_denials(pair: Pair) -> None:
    _granted(pair, "db/audited", b"audited-value-5e02")
    before = len(AgentAudit(Home.open(pair.ag, "agent")).records())
    _both(["agent", "get", "--home", str(pair.ag), "db/audited"])
    _both(["agent", "get", "--home", str(pair.ag), "db/missing"])
    records = AgentAudit(Home.open(pair.ag, "agent")).records()[before:]
    assert [r.type for r in records] == [
        "secret.read",
        "secret.read",
        "secret.denied",
        "secret.denied",
    ]
    assert b"audited-value-5e02" not in b"".join(
        json.dumps(dict(r.fields)).encode() for r in records
    )


def test_fast_get_delivers_to_a_configured_sink(pair: Pair, tmp_path: Path) -> None:
    _granted(pair, "db/sunk", b"sunk-value-0b9e")
    sink = tmp_path / "audit.jsonl"
    assert pair.agent("config", "set", "audit.jsonl", str(sink)).status == 0
    fast, _ = _both(["agent", "get", "--home", str(pair.ag), "db/sunk"])
    assert fast[0] == 0
    lines = [json.loads(line) for line in sink.read_text().splitlines()]
    assert [line["type"] for line in lines].count("secret.read") == 2
    assert "sunk-value-0b9e" not in sink.read_text()


@pytest.mark.parametrize(
    ("args", "env_home", "expected"),
    [
        (["agent", "get", "--home", "H", "p"], None, ("H", "p")),
        (["agent", "get", "p", "--home", "H"], None, ("H", "p")),
        (["agent", "get", "--home=H", "p"], None, ("H", "p")),
        (["agent", "get", "p"], "H", ("H", "p")),
        (["agent", "get", "--home", "H", "p"], "other", ("H", "p")),
        (["agent", "get", "p"], None, ("default", "p")),
        (["agent", "get", "p"], "", ("default", "p")),
        (["agent", "get", "--home", "H"], None, None),
        (["agent", "get", "--home", "H", "p", "q"], None, None),
        (["agent", "get", "--home", "H", "--home", "H", "p"], None, None),
        (["agent", "get", "--home", "H", "--help"], None, None),
        (["agent", "get", "--home", "H", "-h", "p"], None, None),
        (["agent", "get", "--home", "H", "--", "p"], None, None),
        (["agent", "get", "--home", "--x", "p"], None, None),
        (["agent", "get", "--home"], None, None),
        (["agent", "get", "--home=", "p"], None, None),
        (["agent", "get", "--home", "", "p"], "H", None),
        (["agent", "get", "--version", "previous", "--home", "H", "p"], None, None),
        (["agent", "status", "--home", "H"], None, None),
        (["--help", "agent", "get", "--home", "H", "p"], None, None),
        (["gateway", "get", "--home", "H", "p"], None, None),
    ],
)
def test_only_plain_agent_get_takes_the_fast_path(
    tmp_path: Path, args: list[str], env_home: str | None, expected: tuple[str, str] | None
) -> None:
    home = tmp_path / "home"
    home.mkdir()

    def real(items: list[str]) -> list[str]:
        return [str(home) if a == "H" else a.replace("=H", f"={home}") for a in items]

    env = None if env_home is None else (str(home) if env_home == "H" else env_home)
    parsed = parse_agent_get(real(args), env)
    if expected is None:
        assert parsed is None
    elif expected[0] == "default":
        assert parsed == (None, expected[1])
    else:
        assert parsed == (home, expected[1])


def test_a_home_that_is_not_a_folder_goes_to_click(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert parse_agent_get(["agent", "get", "--home", str(tmp_path / "file"), "p"], None) is None
    assert parse_agent_get(["agent", "get", "--home", str(tmp_path / "none"), "p"], None) is None


def test_get_value_in_process_reads_and_audits_who_asked(pair: Pair) -> None:
    _granted(pair, "db/direct", b"direct-value-3f7a")
    assert get_value(pair.ag, "db/direct") == b"direct-value-3f7a"
    last = AgentAudit(Home.open(pair.ag, "agent")).records()[-1]
    assert last.type == "secret.read"
    assert dict(last.fields)["uid"] == who()["uid"] == os.getuid()
