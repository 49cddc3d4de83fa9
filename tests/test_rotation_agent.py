"""Rotation from the isolated side: requests to the gateway, local executors with escrow in the
return stream (re-sent until acknowledged), failures, hangs, a kill mid-way, and races."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from inner_agent.rawdb import raw_connection
from inner_agent.rotation_outbox import outbox, queue
from relay.home import Home
from tests.conftest import Pair, run_process, run_relay

PATH = "db/plant7/password"
OLD = f"PLANTED-agent-old-{os.urandom(6).hex()}".encode()


def _ready(pair: Pair, ttl: str | None = None) -> None:
    assert pair.gateway("grant", "plant7", "db/**").status == 0
    pair.put(PATH, OLD, *(("--ttl", ttl) if ttl else ()))
    _forward(pair)


def _forward(pair: Pair) -> None:
    """Gateway export, agent import (the forward stream)."""
    for stale in pair.out.glob("*.bundle") if pair.out.exists() else ():
        stale.unlink()
    pair.export()
    result = pair.agent("import", str(pair.out))
    assert result.status == 0, result.err


def _back(pair: Pair, deliver: bool = True) -> Path:
    """Agent audit export, gateway import (the return stream); ``deliver=False`` loses it."""
    back = pair.root / "back"
    for stale in back.glob("*") if back.exists() else ():
        stale.unlink()
    result = pair.agent("audit", "export", "--to", str(back))
    assert result.status == 0, result.err
    if deliver:
        imported = pair.gateway("import", str(back))
        assert imported.status == 0, imported.err
    return back


def _executor(pair: Pair, body: str) -> None:
    with (pair.ag / "relay.toml").open("a") as config:
        config.write(f'\n[[rotation.executor]]\npaths = ["db/**"]\n{body}\n')


def _status(pair: Pair) -> list[dict[str, object]]:
    result = pair.gateway("rotation", "status", "--json")
    assert result.status == 0, result.err
    return list(json.loads(result.out))


def _audit_types(pair: Pair, side: str) -> list[str]:
    """The gateway's own records, or the agent's (those it holds and those the gateway has)."""
    if side == "gateway":
        out = pair.gateway("audit", "--own", "--json").out
        return [json.loads(line)["type"] for line in out.splitlines()]
    out = pair.gateway("audit", "--json").out + pair.agent("audit", "--json").out
    records = {r["seq"]: r["type"] for r in map(json.loads, out.splitlines())}
    return [records[seq] for seq in sorted(records)]


def test_a_request_travels_back_and_the_next_bundle_answers_it(pair: Pair) -> None:
    _ready(pair)
    result = pair.agent("rotate", PATH)
    assert result.status == 0 and "requested" in result.out, result.err
    assert "already requested" in pair.agent("rotate", PATH).out  # once until answered
    _back(pair)
    (item,) = _status(pair)
    assert (item["kind"], item["reason"], item["result"], item["result_version"]) == (
        "request", "manual", "rotated", 2,
    )  # fmt: skip
    _forward(pair)
    new = pair.get(PATH).stdout.strip()
    assert new and new != OLD
    _back(pair)
    kinds = [(r["kind"], r["status"]) for r in _status(pair)]
    assert kinds == [("request", None), ("outcome", "applied")]
    _forward(pair)  # acknowledges: the outbox empties
    assert outbox(Home.open(pair.ag, "agent")) == []
    assert "rotation.requested" in _audit_types(pair, "agent")
    assert "secret.rotated" in _audit_types(pair, "gateway")


def test_a_secret_inside_its_expiry_window_requests_itself(pair: Pair) -> None:
    assert pair.agent("config", "set", "rotation.expiry_window", "2h").status == 0
    _ready(pair, ttl="1h")
    (item,) = outbox(Home.open(pair.ag, "agent"))
    assert (item.kind, item.path, item.reason) == ("request", PATH, "expiry")
    _forward(pair)  # another import does not ask twice
    assert len(outbox(Home.open(pair.ag, "agent"))) == 1


def test_local_rotation_escrow_is_resent_until_acknowledged(pair: Pair) -> None:
    device = pair.root / "device-password"
    _executor(pair, f'kind = "command"\ncommand = ["sh", "-c", "cat > {device}"]')
    _ready(pair)
    result = pair.agent("rotate", PATH, "--json")
    assert result.status == 0, result.err
    assert json.loads(result.out)["version"] == 2
    new = pair.get(PATH).stdout.strip()
    assert device.read_bytes() == new and new != OLD
    previous = run_relay("agent", "get", "--home", str(pair.ag), "--version", "previous", PATH)
    assert previous.stdout == OLD + b"\n"
    _back(pair, deliver=False)  # lost in transit
    _forward(pair)  # a bundle made before the escrow arrived does not revert the local value
    assert pair.get(PATH).stdout.strip() == new
    _back(pair)  # sent again
    escrow = [r for r in _status(pair) if r["kind"] == "escrow"]
    assert [(e["result"], e["result_version"]) for e in escrow] == [("recorded", 2)]
    _forward(pair)
    assert pair.get(PATH).stdout.strip() == new
    assert outbox(Home.open(pair.ag, "agent")) == []
    listed = json.loads(pair.gateway("secret", "list", "--json").out)
    assert listed[0]["version"] == 2
    for side in ("gateway", "agent"):
        text = pair.gateway("audit", "--own", "--json").out + pair.agent("audit", "--json").out
        assert new.decode() not in text and OLD.decode() not in text, side
    assert "secret.escrowed" in _audit_types(pair, "gateway")
    assert "rotation.applied" in _audit_types(pair, "agent")


def test_a_failing_or_hanging_executor_keeps_the_old_value(pair: Pair) -> None:
    _executor(pair, 'kind = "command"\ncommand = ["sh", "-c", "cat > /dev/null; exit 3"]')
    _ready(pair)
    failed = pair.agent("rotate", PATH)
    assert failed.status == 1
    assert failed.err.startswith("relay: error: rotation_failed: "), failed.err
    assert pair.get(PATH).stdout == OLD + b"\n"
    hang = (
        f"sleep 30.{os.getpid()}{os.urandom(2).hex().translate(str.maketrans('abcdef', '123456'))}"
    )
    config = (pair.ag / "relay.toml").read_text().replace("exit 3", hang)
    (pair.ag / "relay.toml").write_text(
        config.replace('kind = "command"', 'kind = "command"\ntimeout = "1s"')
    )
    hung = pair.agent("rotate", PATH)
    assert hung.err.startswith("relay: error: rotation_timeout: "), hung.err
    assert pair.get(PATH).stdout == OLD + b"\n"
    sleepers = subprocess.run(["pgrep", "-f", hang], capture_output=True, check=False)
    assert not sleepers.stdout.strip()  # the hung executor was killed with its group
    _back(pair)
    statuses = [r["status"] for r in _status(pair) if r["kind"] == "outcome"]
    assert statuses == ["failed", "timeout"]
    assert _audit_types(pair, "agent").count("rotation.failed") == 2


def test_killed_after_the_executor_the_candidate_is_tried_on_restart(pair: Pair) -> None:
    device = pair.root / "device-password"
    device.write_bytes(OLD)
    # The executor sets the value, then the agent is killed before it commits.
    setter = f"cat > {device}; kill -9 $PPID"
    verify = f"cmp -s - {device}"
    _executor(
        pair,
        f'kind = "command"\ncommand = ["sh", "-c", "{setter}"]\nverify = ["sh", "-c", "{verify}"]',
    )
    _ready(pair)
    killed = run_process("agent", "rotate", "--home", str(pair.ag), PATH)
    assert killed.status == -9
    assert pair.get(PATH).stdout == OLD + b"\n"  # not committed
    assert device.read_bytes() != OLD  # but the device has the candidate
    resolved = pair.agent("rotate", "--recover", "--json")
    assert resolved.status == 0, resolved.err
    assert [r["status"] for r in json.loads(resolved.out)] == ["recovered"]
    assert pair.get(PATH).stdout.strip() == device.read_bytes()
    assert [i.kind for i in outbox(Home.open(pair.ag, "agent"))] == ["escrow", "outcome"]


def test_a_candidate_that_does_not_work_is_abandoned(pair: Pair) -> None:
    device = pair.root / "device-password"
    device.write_bytes(OLD)
    killer = "kill -9 $PPID"  # killed before the device took the value
    verify = f"cmp -s - {device}"
    _executor(
        pair,
        f'kind = "command"\ncommand = ["sh", "-c", "{killer}"]\nverify = ["sh", "-c", "{verify}"]',
    )
    _ready(pair)
    assert run_process("agent", "rotate", "--home", str(pair.ag), PATH).status == -9
    resolved = pair.agent("rotate", "--recover", "--json")
    assert [r["status"] for r in json.loads(resolved.out)] == ["abandoned"]
    assert pair.get(PATH).stdout == OLD + b"\n"
    again = run_process("agent", "rotate", "--home", str(pair.ag), PATH)
    assert again.status == -9  # a new rotation could start: the candidate was dropped


def test_a_gateway_rotation_racing_a_local_one_stays_monotonic(pair: Pair) -> None:
    device = pair.root / "device-password"
    _executor(pair, f'kind = "command"\ncommand = ["sh", "-c", "cat > {device}"]')
    _ready(pair)
    assert pair.gateway("rotate", PATH).status == 0  # gateway: version 2
    assert pair.agent("rotate", PATH).status == 0  # agent, from version 1: its version 2
    local = pair.get(PATH).stdout.strip()
    _forward(pair)  # the gateway's version 2 does not displace the device's value
    assert pair.get(PATH).stdout.strip() == local
    _back(pair)
    (escrow,) = [r for r in _status(pair) if r["kind"] == "escrow"]
    assert escrow["result_version"] == 3  # above everything held: the device's value wins
    _forward(pair)
    assert pair.get(PATH).stdout.strip() == local == device.read_bytes()
    listed = json.loads(pair.agent("secret", "list", "--json").out)
    assert listed[0]["version"] == 3
    types = _audit_types(pair, "gateway")
    assert "secret.rotated" in types and "secret.escrowed" in types


@pytest.mark.parametrize("length", [2000, 2001], ids=["at-the-cap", "over-the-cap"])
def test_an_escrow_is_judged_by_the_gateways_configured_secret_cap(pair: Pair, length: int) -> None:
    # The gateway's limits.max_secret_bytes (2000 here; the fixed cap was 1 MiB) bounds an
    # escrowed value exactly as it bounds a value in the secret stream.
    assert pair.gateway("config", "set", "limits.max_secret_bytes", "2000").status == 0
    device = pair.root / "device-password"
    _executor(
        pair, f'kind = "command"\ncommand = ["sh", "-c", "cat > {device}"]\nlength = {length}'
    )
    _ready(pair)
    assert pair.agent("rotate", PATH).status == 0
    back = _back(pair, deliver=False)
    imported = pair.gateway("import", str(back))
    if length == 2000:
        assert imported.status == 0, imported.err
        escrow = [r for r in _status(pair) if r["kind"] == "escrow"]
        assert [e["result"] for e in escrow] == ["recorded"]
        return
    assert imported.status != 0
    assert "malformed" in imported.err, imported.err
    assert [r for r in _status(pair) if r["kind"] == "escrow"] == []


def test_reports_are_kept_per_path_and_a_resent_item_is_taken_once(pair: Pair) -> None:
    _ready(pair)
    home = Home.open(pair.ag, "agent")
    for version in range(2, 32):  # 30 outcomes of one path
        item = {"kind": "outcome", "path": PATH, "version": version, "status": "applied"}
        queue(home, "rotation.outcome", {"path": PATH}, {**item, "detail": "x"}, 1)
    _back(pair)
    _back(pair)  # not acknowledged yet: the items are sent again with their records
    rows = [r for r in _status(pair) if r["kind"] == "outcome"]
    assert sorted(r["version"] for r in rows) == list(range(12, 32))  # the 20 newest
    assert _audit_types(pair, "gateway").count("rotation.outcome") == 30  # each acted on once


def test_a_switch_with_no_daemon_running_is_reported_by_the_next_audit_export(pair: Pair) -> None:
    _ready(pair)
    staged = run_relay(
        "gateway", "secret", "put", "--home", str(pair.gw), PATH, "-", "--activates-at", "1h",
        stdin=b"PLANTED-staged",
    )  # fmt: skip
    assert staged.status == 0, staged.err
    _forward(pair)
    assert pair.get(PATH).stdout == OLD + b"\n"
    with raw_connection(Home.open(pair.ag, "agent")) as conn:  # the hour has passed
        conn.execute("UPDATE secret_versions SET at = 1 WHERE label = 'pending'")
        conn.commit()
    _back(pair)
    outcomes = [(r["status"], r["version"]) for r in _status(pair) if r["kind"] == "outcome"]
    assert outcomes == [("activated", 2)]
    assert "secret.activated" in _audit_types(pair, "agent")
