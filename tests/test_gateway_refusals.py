"""A gateway command refused with a reason code is recorded in the gateway's own audit chain
(``operator.refused``: the command and the code, never the values given). Real CLI, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from outer_gateway.audit import GatewayAudit, record_refusal
from outer_gateway.store import GatewayStore
from relay.home import Home
from tests.conftest import Result, run_relay

PLANTED = b"PLANTED-refused-value-6f1d"


@pytest.fixture
def gw(tmp_path: Path) -> Path:
    home = tmp_path / "gw"
    created = run_relay("gateway", "init", "--home", str(home), "--name", "hq")
    assert created.status == 0, created.err
    return home


def _refused(home: Path) -> list[dict[str, object]]:
    opened = Home.open(home, "gateway")
    store = GatewayStore.open(opened)
    try:
        records = GatewayAudit(opened, store.engine).own_records()
    finally:
        store.close()
    return [dict(r.fields) for r in records if r.type == "operator.refused"]


def _gateway(
    home: Path, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> Result:
    return run_relay("gateway", *args, "--home", str(home), stdin=stdin, env=env)


def test_representative_refusals_are_audited_with_their_code(gw: Path, tmp_path: Path) -> None:
    bad_request = tmp_path / "bad.request"
    bad_request.write_text("not an enrollment request\n")
    bad_values = tmp_path / "values.json"
    bad_values.write_text('{"db/pw": 1}')
    cases = [
        (("enroll", str(bad_request)), "gateway enroll", "bad_identity"),
        (("policy", "set", "db/*", "--charset", "nope"), "gateway policy set", None),
        (("agents", "revoke", "nobody"), "gateway agents revoke", None),
        (("key", "list"), "gateway key list", "no_root"),
        (("import", str(tmp_path / "nowhere")), "gateway import", None),
        (("secret", "import", str(bad_values)), "gateway secret import", "bad_file"),
        (("grant", "nobody", "db/*"), "gateway grant", "unknown_agent"),
    ]
    seen = []
    for args, command, code in cases:
        result = _gateway(gw, *args)
        assert result.status != 0, args
        reason = result.err.removeprefix("relay: error: ").split(":", 1)[0]
        if code is not None:
            assert reason == code, result.err
        seen.append({"command": command, "reason": reason})
    assert _refused(gw) == seen


def test_refused_key_operations_are_audited(gw: Path, tmp_path: Path) -> None:
    pass_file = tmp_path / "root.pass"
    pass_file.write_text("root passphrase of the refusals test\n")
    env = {"RELAY_ROOT_PASSPHRASE_FILE": str(pass_file)}
    root1, stranger = tmp_path / "vault" / "root1.key", tmp_path / "vault" / "stranger.key"
    assert _gateway(gw, "root", "init", "--root-key", str(root1), env=env).status == 0
    other = tmp_path / "other"
    assert run_relay("gateway", "init", "--home", str(other), "--name", "hq").status == 0
    assert _gateway(other, "root", "init", "--root-key", str(stranger), env=env).status == 0
    active = Home.open(gw, "gateway").identity.key_id
    refusals = [
        (("key", "revoke", "--root-key", str(root1), active), "key_active"),
        (("key", "rotate", "--root-key", str(stranger)), "wrong_root"),
        (("key", "revoke", "--root-key", str(root1), "0123456789abcdef"), "unknown_key"),
    ]
    for args, code in refusals:
        result = _gateway(gw, *args, env=env)
        assert result.status != 0 and f"error: {code}:" in result.err, result.err
    assert [r["reason"] for r in _refused(gw)] == [code for _, code in refusals]
    assert {r["command"] for r in _refused(gw)} == {"gateway key revoke", "gateway key rotate"}


def test_no_value_given_to_a_refused_command_reaches_the_audit(gw: Path) -> None:
    refused = _gateway(gw, "secret", "put", "../escape", "-", stdin=PLANTED)
    assert refused.status != 0
    (record,) = _refused(gw)
    assert record["command"] == "gateway secret put"
    assert PLANTED.decode() not in str(record) and "escape" not in str(record)


def test_a_refusal_in_a_home_that_does_not_open_is_not_audited(tmp_path: Path) -> None:
    record_refusal(tmp_path / "missing", "gateway export", "not_initialized")  # no error
    assert not (tmp_path / "missing").exists()
