"""The end-to-end promise of issue 13: a site enrolled once keeps receiving bundles across a
signing-key rotation, a root rotation and an agent key rotation in a row, with no re-trust.
Everything through the real CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import Result, run_relay


def _ok(result: Result) -> Result:
    assert result.status == 0, result.err
    return result


def test_one_enrollment_survives_every_rotation(tmp_path: Path) -> None:
    pass_file = tmp_path / "root.pass"
    pass_file.write_text("root passphrase for the long-lived site\n")
    env = {"RELAY_ROOT_PASSPHRASE_FILE": str(pass_file)}
    gw, ag, out, back = tmp_path / "gw", tmp_path / "ag", tmp_path / "out", tmp_path / "back"
    root1, root2 = tmp_path / "vault" / "root1.key", tmp_path / "vault" / "root2.key"

    def gateway(*args: str) -> Result:
        return _ok(run_relay("gateway", *args, "--home", str(gw), env=env))

    def agent(*args: str) -> Result:
        return _ok(run_relay("agent", *args, "--home", str(ag)))

    def deliver(value: bytes) -> None:
        _ok(run_relay("gateway", "secret", "put", "--home", str(gw), "app/pw", "-", stdin=value))
        shutil.rmtree(out, ignore_errors=True)
        gateway("export", "--to", str(out))
        outcomes = json.loads(agent("import", "--json", str(out)).out)
        assert [o["status"] for o in outcomes] == ["applied"], outcomes
        assert agent("get", "app/pw").stdout == value + b"\n"

    def return_stream() -> list[dict[str, object]]:
        shutil.rmtree(back, ignore_errors=True)
        agent("audit", "export", "--to", str(back))
        return list(json.loads(gateway("import", "--json", str(back)).out))

    # enrollment: the only visit
    gateway("init", "--name", "hq")
    gateway("root", "init", "--root-key", str(root1))
    agent_init = run_relay(
        "agent",
        "init",
        "--home",
        str(ag),
        "--name",
        "plant7",
        "--request-out",
        str(tmp_path / "plant7.request"),
    )
    _ok(agent_init)
    gateway("enroll", str(tmp_path / "plant7.request"))
    gateway("grant", "plant7", "app/*")
    gateway("identity", "--out", str(tmp_path / "hq.identity"))
    agent("trust", str(tmp_path / "hq.identity"))
    deliver(b"v1")
    first = json.loads(agent("status", "--json").out)

    # 1. the gateway's signing key
    gateway("key", "rotate", "--root-key", str(root1))
    deliver(b"v2")
    # 2. the gateway's root (the old root signs the new one)
    gateway("root", "rotate", "--root-key", str(root1), "--new-root-key", str(root2))
    deliver(b"v3")
    # 3. the agent's own key, asked for in the return stream
    agent("key", "rotate")
    assert [o["status"] for o in return_stream()] == ["imported"]
    deliver(b"v4")

    last = json.loads(agent("status", "--json").out)
    assert last["gateway_root"]["version"] == 2
    assert last["gateway_root"]["fingerprint"] != first["gateway_root"]["fingerprint"]
    assert last["gateway_key_id"] != first["gateway_key_id"]
    assert last["fingerprint"] != first["fingerprint"]  # the agent's new key
    listed = json.loads(gateway("agents", "--json").out)
    assert listed[0]["fingerprint"] == last["fingerprint"]
    # the return stream still flows, signed by the new agent key, to the new gateway key
    assert [o["status"] for o in return_stream()] == ["imported"]
    keys = json.loads(gateway("key", "list", "--json").out)
    assert sorted((k["role"], k["state"]) for k in keys) == [
        ("root", "active"),
        ("root", "retired"),
        ("signing", "active"),
        ("signing", "retired"),
    ]
