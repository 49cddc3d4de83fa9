"""Shared fixtures: run the real ``relay`` CLI as a process, and a ready gateway/agent pair."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.children import child_env

RELAY = [sys.executable, "-m", "relay"]


@dataclass
class Result:
    """A finished ``relay`` process."""

    status: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        return self.stdout.decode()

    @property
    def err(self) -> str:
        return self.stderr.decode()


def run_relay(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> Result:
    """Run ``relay ARGS`` in this process (fast: SQLAlchemy is imported once per test run)."""
    from click.testing import CliRunner

    from relay.cli import cli

    clean = {"RELAY_HOME": None, "RELAY_PASSPHRASE": None}
    runner = CliRunner(env={**clean, **(env or {})})
    outcome = runner.invoke(cli, list(args), input=stdin or b"", catch_exceptions=True)
    if outcome.exception is not None and not isinstance(outcome.exception, SystemExit):
        raise outcome.exception
    result = Result(outcome.exit_code, outcome.stdout_bytes, outcome.stderr_bytes)
    assert b"Traceback" not in result.stderr, result.err
    return result


def run_process(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> Result:
    """Run ``relay ARGS`` as a child process and capture everything it printed."""
    full_env = child_env(env)
    proc = subprocess.run(
        [*RELAY, *args],
        input=stdin or b"",
        capture_output=True,
        env=full_env,
        timeout=120,
        check=False,
    )
    result = Result(proc.returncode, proc.stdout, proc.stderr)
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()
    return result


@dataclass
class Pair:
    """An initialised gateway and agent that trust each other, plus scratch folders."""

    root: Path
    gw: Path
    ag: Path
    out: Path

    def gateway(self, *args: str, stdin: bytes | None = None) -> Result:
        return run_relay("gateway", *args, "--home", str(self.gw), stdin=stdin)

    def agent(self, *args: str, stdin: bytes | None = None) -> Result:
        return run_relay("agent", *args, "--home", str(self.ag), stdin=stdin)

    def put(self, path: str, value: bytes, *extra: str) -> None:
        result = run_relay(
            "gateway", "secret", "put", "--home", str(self.gw), path, "-", *extra, stdin=value
        )
        assert result.status == 0, result.err

    def export(self, *extra: str) -> list[Path]:
        result = run_relay(
            "gateway", "export", "--home", str(self.gw), "--to", str(self.out), *extra
        )
        assert result.status == 0, result.err
        return [Path(line) for line in result.out.split()]

    def get(self, path: str) -> Result:
        return run_relay("agent", "get", "--home", str(self.ag), path)


def make_pair(root: Path, gateway_name: str = "hq", agent_name: str = "plant7") -> Pair:
    """Create a gateway and an agent with the real CLI, enrolled and trusted."""
    gw, ag = root / "gw", root / "ag"
    for args in (
        ("gateway", "init", "--home", str(gw), "--name", gateway_name),
        ("gateway", "identity", "--home", str(gw), "--out", str(root / "gw.identity")),
        (
            "agent",
            "init",
            "--home",
            str(ag),
            "--name",
            agent_name,
            "--request-out",
            str(root / "ag.request"),
        ),
        ("gateway", "enroll", "--home", str(gw), str(root / "ag.request")),
        ("agent", "trust", "--home", str(ag), str(root / "gw.identity")),
    ):
        result = run_relay(*args)
        assert result.status == 0, result.err
    return Pair(root, gw, ag, root / "out")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    yield make_pair(tmp_path)


PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def database() -> Iterator[str]:
    """A throwaway database on the local PostgreSQL server (dropped after the test), as a
    SQLAlchemy URL."""
    import secrets

    import psycopg

    name = f"relay_test_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


# -- the fast tier ---------------------------------------------------------------------------
# `make test-fast` leaves out tests marked `slow`: those that start a server or a process, or set
# up a gateway and an agent. Fixtures that do so mark every test using them; a test that does so
# itself carries `@pytest.mark.slow` (or its module a `pytestmark`).
SLOW_FIXTURES = frozenset(
    {"pair", "agent", "sshd", "rsyslog", "database", "receiver", "lossy_namespace", "tools_dir"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests that use a slow fixture as ``slow``."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _fast_tests_start_no_process(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test outside the ``slow`` tier that starts a process fails: the fast tier's promise."""
    if request.node.get_closest_marker("slow") is not None:
        return
    import subprocess

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a test that starts a process must be marked slow")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
