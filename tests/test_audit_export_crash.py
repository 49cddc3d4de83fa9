"""The agent's audit export under a real SIGKILL at its named crash points
(:mod:`relay.crashpoint`): the seq, the seal and ``audit.exported`` commit before the file is
written, so a crash never leaves an exported file without its record, and never loses a record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relay import crashpoint
from tests.conftest import Pair, run_process, run_relay

pytestmark = pytest.mark.slow  # starts `relay agent audit export` processes that kill themselves


def records(pair: Pair) -> list[dict[str, object]]:
    result = run_relay("agent", "audit", "--home", str(pair.ag), "--json")
    assert result.status == 0, result.err
    return [json.loads(line) for line in result.out.splitlines()]


def exported(pair: Pair) -> list[dict[str, object]]:
    return [r for r in records(pair) if r["type"] == "audit.exported"]


def crash_export(pair: Pair, to: Path, stage: str) -> None:
    result = run_process(
        "agent",
        "audit",
        "export",
        "--home",
        str(pair.ag),
        "--to",
        str(to),
        env={crashpoint.ENV: stage},
    )
    assert result.status == -9  # SIGKILL at the stage, nothing flushed


@pytest.mark.parametrize("stage", ["audit_export.sealed", "audit_export.committed"])
def test_a_crash_before_the_file_leaves_no_file_and_loses_no_record(
    pair: Pair, tmp_path: Path, stage: str
) -> None:
    assert pair.gateway("grant", "plant7", "**").status == 0
    for n in range(3):
        pair.put(f"db/{n}", b"v")
    pair.export()
    assert pair.agent("import", str(pair.out)).status == 0
    held = [r["seq"] for r in records(pair)]
    out = tmp_path / "audit-out"
    crash_export(pair, out, stage)
    assert not out.exists() or list(out.iterdir()) == []  # no file without its record
    spent = exported(pair)
    if stage == "audit_export.sealed":
        assert spent == []  # rolled back with the process: the seq is not spent
    else:
        assert [r["fields"]["bundle_seq"] for r in spent] == [1]  # type: ignore[index]
    result = run_relay(
        "agent", "audit", "export", "--home", str(pair.ag), "--to", str(out), "--json"
    )
    assert result.status == 0, result.err
    doc = json.loads(result.out)
    (bundle,) = doc["bundles"]
    assert bundle["seq"] == (1 if stage == "audit_export.sealed" else 2)  # never sealed twice
    assert bundle["first_seq"] <= held[0] and bundle["last_seq"] >= held[-1]  # nothing lost
    files = sorted(p.name for p in out.iterdir())
    recorded = sorted(str(r["fields"]["file"]) for r in exported(pair))  # type: ignore[index]
    assert set(files) <= set(recorded)  # every file has its record


def test_a_crash_after_the_file_keeps_the_file_and_its_record(pair: Pair, tmp_path: Path) -> None:
    out = tmp_path / "audit-out"
    crash_export(pair, out, "audit_export.written")
    (written,) = out.iterdir()
    assert [r["fields"]["file"] for r in exported(pair)] == [written.name]  # type: ignore[index]
