"""The spine through the real CLI: put → grant → export → import → get, and the secret lifecycle."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Pair, run_relay
from tests.consume_kit import until_wall_clock


def test_value_reaches_the_application_exactly(pair: Pair) -> None:
    pair.put("db/plant7/password", b"correct horse battery staple\n")
    pair.gateway("grant", "plant7", "db/plant7/*")
    bundles = pair.export()
    assert [b.name for b in bundles] == ["hq-to-plant7.secrets.0000000001.bundle"]
    imported = pair.agent("import", str(pair.out))
    assert imported.status == 0, imported.err
    assert "seq 1, 1 written" in imported.out
    got = pair.get("db/plant7/password")
    assert got.status == 0
    assert got.stdout == b"correct horse battery staple\n"  # one trailing newline, no more


def test_grants_decide_what_an_agent_receives(pair: Pair) -> None:
    pair.put("db/plant7/password", b"p7")
    pair.put("db/plant9/password", b"p9")
    pair.gateway("grant", "plant7", "db/plant7/**")
    pair.export()
    pair.agent("import", str(pair.out))
    assert pair.get("db/plant7/password").stdout == b"p7\n"
    denied = pair.get("db/plant9/password")
    assert denied.status != 0
    assert denied.stdout == b""
    assert "not_found" in denied.err


def test_reimport_is_a_harmless_duplicate(pair: Pair) -> None:
    pair.put("a/b", b"v")
    pair.gateway("grant", "plant7", "a/*")
    pair.export()
    assert pair.agent("import", str(pair.out)).status == 0
    again = pair.agent("import", str(pair.out))
    assert again.status == 0
    assert "duplicate" in again.out


def test_old_bundle_left_on_the_medium_is_a_duplicate_not_an_alarm(pair: Pair) -> None:
    pair.put("a/b", b"v1")
    pair.gateway("grant", "plant7", "a/*")
    pair.export()
    pair.agent("import", str(pair.out))
    pair.put("a/b", b"v2")
    pair.export()
    result = pair.agent("import", "--json", str(pair.out))
    assert result.status == 0, result.err
    statuses = [o["status"] for o in json.loads(result.out)]
    assert statuses == ["duplicate", "applied"]
    assert pair.get("a/b").stdout == b"v2\n"


def test_removal_and_revocation_reach_the_agent(pair: Pair) -> None:
    pair.put("a/one", b"1")
    pair.put("a/two", b"2")
    pair.put("b/three", b"3")
    pair.gateway("grant", "plant7", "a/*")
    pair.gateway("grant", "plant7", "b/*")
    pair.export()
    pair.agent("import", str(pair.out))
    assert pair.gateway("secret", "rm", "a/one").status == 0
    assert pair.gateway("revoke", "plant7", "b/*").status == 0
    pair.export()
    pair.agent("import", str(pair.out))
    listed = json.loads(pair.agent("secret", "list", "--json").out)
    assert [s["path"] for s in listed] == ["a/two"]
    assert "not_found" in pair.get("a/one").err
    assert "not_found" in pair.get("b/three").err


def test_an_expired_secret_is_refused(pair: Pair) -> None:
    pair.put("short/lived", b"soon-gone", "--ttl", "1s")
    pair.gateway("grant", "plant7", "short/*")
    pair.export()
    pair.agent("import", str(pair.out))
    until_wall_clock(json.loads(pair.agent("secret", "list", "--json").out)[0]["expires_at"])
    result = pair.get("short/lived")
    assert result.status != 0
    assert result.stdout == b""
    assert result.err.startswith("relay: error: expired:")


def test_bulk_import_from_json_and_dotenv(pair: Pair) -> None:
    (pair.root / "s.json").write_text(json.dumps({"app/api-key": "k1", "app/token": "t1"}))
    (pair.root / "s.env").write_text(
        '# comment\nexport DB_USER=admin\nDB_PASS="quoted \\"pw\\""\nSINGLE=\'a b\'\n'
    )
    assert pair.gateway("secret", "import", str(pair.root / "s.json")).status == 0
    assert pair.gateway("secret", "import", str(pair.root / "s.env")).status == 0
    again = pair.gateway("secret", "import", str(pair.root / "s.json"))
    assert "0 new or changed, 2 unchanged" in again.out
    pair.gateway("grant", "plant7", "*")
    pair.gateway("grant", "plant7", "app/*")
    pair.export()
    pair.agent("import", str(pair.out))
    assert pair.get("DB_PASS").stdout == b'quoted "pw"\n'
    assert pair.get("SINGLE").stdout == b"a b\n"
    assert pair.get("app/token").stdout == b"t1\n"


def test_secret_list_shows_metadata_only(pair: Pair) -> None:
    pair.put("x/y", b"never-listed-value")
    listed = pair.gateway("secret", "list", "--json")
    doc = json.loads(listed.out)
    assert doc[0]["path"] == "x/y"
    assert doc[0]["version"] == 1
    assert "never-listed-value" not in listed.out
    pair.put("x/y", b"second")
    assert json.loads(pair.gateway("secret", "list", "--json").out)[0]["version"] == 2


def test_value_is_never_taken_from_argv(pair: Pair) -> None:
    result = pair.gateway("secret", "put", "x/y", "hunter2")
    assert result.status != 0
    assert "--value-file" in result.err


def test_value_from_file(pair: Pair) -> None:
    value = pair.root / "v"
    value.write_bytes(b"from-a-file\n")
    assert pair.gateway("secret", "put", "x/y", "--value-file", str(value)).status == 0
    pair.gateway("grant", "plant7", "x/y")
    pair.export()
    pair.agent("import", str(pair.out))
    assert pair.get("x/y").stdout == b"from-a-file\n"


def test_status_and_inspect(pair: Pair) -> None:
    pair.put("x/y", b"v")
    pair.gateway("grant", "plant7", "x/*")
    bundle = pair.export()[0]
    inspected = json.loads(run_relay("bundle", "inspect", "--json", str(bundle)).out)
    assert inspected["sender"] == "hq"
    assert inspected["recipient"] == "plant7"
    assert inspected["kind"] == "secrets"
    assert inspected["seq"] == 1
    assert inspected["size"] == bundle.stat().st_size
    pair.agent("import", str(bundle))
    status = json.loads(pair.agent("status", "--json").out)
    assert status["name"] == "plant7"
    assert status["secrets"] == 1
    assert status["gateway_fingerprint"].startswith("SHA256:")
    assert isinstance(status["last_import"], int)


def test_export_validity_and_agent_selection(pair: Pair) -> None:
    pair.put("x/y", b"v")
    pair.gateway("grant", "plant7", "x/*")
    bundle = pair.export("--agent", "plant7", "--valid-for", "2h")[0]
    header = json.loads(run_relay("bundle", "inspect", "--json", str(bundle)).out)
    assert header["expires"] - header["created"] == 7200
    unknown = pair.gateway("export", "--to", str(pair.out), "--agent", "nobody")
    assert unknown.status != 0
    assert "unknown_agent" in unknown.err


def test_commands_need_an_initialised_home(tmp_path: Path) -> None:
    result = run_relay("agent", "get", "--home", str(tmp_path / "none"), "x")
    assert result.status != 0
    assert "not_initialized" in result.err
    gw = tmp_path / "gw"
    run_relay("gateway", "init", "--home", str(gw), "--name", "hq")
    wrong = run_relay("agent", "status", "--home", str(gw))
    assert "wrong_home" in wrong.err
    again = run_relay("gateway", "init", "--home", str(gw), "--name", "hq")
    assert "already_initialized" in again.err
