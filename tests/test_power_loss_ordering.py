"""Across power loss: what a process has fsynced when its effect becomes visible.

A SIGKILL keeps the OS page cache, so the kill harness cannot show what power loss would lose.
Here the real process runs under ``strace`` and the trace is read as a power cut at the moment
that matters: data written but not yet fsynced at that moment is what power loss would drop.

- ``relay gateway export``: when the bundle file is renamed into place, the WAL frames that
  commit its seq must already be fsynced. (With ``synchronous = NORMAL`` they are not: a power
  cut after the rename can roll the seq back, and the next export would seal a different bundle
  under the same seq.)
- ``relay agent import``: when it reports the bundle applied, the WAL frames holding the new
  state and high-water mark must already be fsynced.

This checks the ordering of real system calls; it does not replay a lost page cache onto the
files (that needs a block-device fault injector such as dm-flakey, i.e. root).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Pair

pytestmark = pytest.mark.slow  # real processes

STRACE = shutil.which("strace")
CALL = re.compile(r"^\d+\s+(?P<call>\w+)\((?P<fd>\d+)<(?P<path>[^>]*)>(?P<rest>.*)$")
RENAME = re.compile(r'^\d+\s+rename\w*\(.*"(?P<target>[^"]+)"\) = 0$')


def traced(root: Path, *args: str) -> list[str]:
    """Run ``relay ARGS`` under strace; the lines of the trace (paths resolved with -y)."""
    trace = root / "trace.txt"
    assert STRACE is not None, "strace is needed (.ci/run installs it)"
    subprocess.run(
        [
            STRACE,
            "-f",
            "-y",
            "-qq",
            "-o",
            str(trace),
            "-e",
            "trace=write,pwrite64,fsync,fdatasync,rename,renameat,renameat2",
            sys.executable,
            "-m",
            "relay",
            *args,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return trace.read_text().splitlines()


def unsynced_wal_writes(lines: list[str], moment: int) -> list[int]:
    """Lines before ``moment`` that wrote to a ``-wal`` file with no fsync of it after them
    (and before ``moment``): what a power cut at ``moment`` could lose."""
    pending: list[int] = []
    for index, line in enumerate(lines[:moment]):
        match = CALL.match(line)
        if match is None or not match.group("path").endswith("-wal"):
            continue
        if match.group("call") in ("write", "pwrite64"):
            pending.append(index)
        elif match.group("call") in ("fsync", "fdatasync"):
            pending.clear()
    return pending


def test_export_seq_is_durable_before_the_bundle_appears(pair: Pair) -> None:
    pair.put("db/pw", b"v1")
    assert pair.gateway("grant", "plant7", "**").status == 0
    lines = traced(pair.root, "gateway", "export", "--home", str(pair.gw), "--to", str(pair.out))
    renames = [
        i
        for i, line in enumerate(lines)
        if (m := RENAME.match(line)) and m.group("target").endswith(".bundle")
    ]
    assert len(renames) == 1, lines
    wal_writes = [i for i, line in enumerate(lines[: renames[0]]) if "-wal>" in line]
    assert wal_writes, "the seq commit goes through the WAL"
    assert unsynced_wal_writes(lines, renames[0]) == [], "seq commit not fsynced before rename"


def test_agent_state_is_durable_before_it_reports_applied(pair: Pair) -> None:
    pair.put("db/pw", b"v1")
    assert pair.gateway("grant", "plant7", "**").status == 0
    (bundle,) = pair.export()
    lines = traced(pair.root, "agent", "import", "--home", str(pair.ag), str(bundle))
    reports = [i for i, line in enumerate(lines) if re.match(r"^\d+\s+write\(1<", line)]
    assert reports, "the import reports on stdout"
    assert any("-wal>" in line for line in lines[: reports[0]])
    assert unsynced_wal_writes(lines, reports[0]) == [], "applied state not fsynced before report"
