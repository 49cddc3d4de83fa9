"""An initialised agent home (in process, no gateway) for unit tests of agent modules."""

from __future__ import annotations

from pathlib import Path

from relay.home import Home
from tests.conftest import run_relay


def init_agent_home(root: Path, name: str = "plant7") -> Home:
    """``relay agent init`` under ``root/ag``; returns the opened home."""
    ag = root / "ag"
    result = run_relay(
        "agent", "init", "--home", str(ag), "--name", name, "--request-out", str(root / "req")
    )
    assert result.status == 0, result.err
    return Home.open(ag, "agent")
