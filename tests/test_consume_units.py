"""The consumption modules on their own (the end-to-end behaviour runs through real processes in
test_agent_exec, test_agent_render, test_agent_hooks and test_agent_supervise): parsing of the
tables and options, the child's environment, the sandbox, the hook state file."""

from __future__ import annotations

import secrets
import signal
from collections.abc import Iterable
from pathlib import Path

import pytest

from inner_agent.consume_config import parse_seconds, parse_signal, read_tables
from inner_agent.consumers import Consumers
from inner_agent.exec_env import child_environment, parse_env_lines, parse_env_options, resolve
from inner_agent.hook_actions import ActionResult
from inner_agent.hooks import HookState
from inner_agent.lookup import Secret
from inner_agent.render import TemplateError, render_template
from inner_agent.secret_source import SecretSource
from relay.errors import RelayError, SecretError
from tests.conftest import run_relay

PLANTED = f"planted-{secrets.token_hex(8)}".encode()


class MemorySecrets:
    """A fixed set of secrets (the store is not under test here)."""

    def __init__(self, values: dict[str, bytes]) -> None:
        self.values = values

    def read_all(self, paths: Iterable[str]) -> dict[str, Secret]:
        found = {}
        for path in paths:
            if path not in self.values:
                raise SecretError(f"no secret {path!r}", code="not_found")
            found[path] = Secret(path, self.values[path], 3, None)
        return found

    def versions(self, paths: Iterable[str]) -> dict[str, int | None]:
        return {p: 3 if p in self.values else None for p in paths}


def source() -> SecretSource:
    return MemorySecrets({"db/pw": PLANTED})


def test_signals_and_durations_read_as_operators_write_them() -> None:
    assert parse_signal("HUP") == parse_signal("SIGHUP") == parse_signal("1") == signal.SIGHUP
    assert parse_seconds("250ms") == 0.25
    assert parse_seconds("2m") == 120.0
    with pytest.raises(RelayError) as bad:
        parse_signal("NOPE")
    assert bad.value.code == "bad_signal"


def test_env_options_refuse_bad_names_and_repeats() -> None:
    assert parse_env_options(["DB=db/pw"]) == (("DB", "db/pw"),)
    for items in (["1X=db/pw"], ["DB=db/pw", "DB=db/pw"], ["DB"]):
        with pytest.raises(RelayError) as bad:
            parse_env_options(items)
        assert bad.value.code == "bad_env"
    assert parse_env_lines("# c\nexport A=1\n\nB=x=y\n") == {"A": "1", "B": "x=y"}


def test_the_child_gets_the_values_but_never_relays_unlocking_variables() -> None:
    resolved = resolve(source(), (("DB", "db/pw"),), None)
    env = child_environment({"PATH": "/bin", "RELAY_PASSPHRASE": "unlock"}, resolved)
    assert env == {"PATH": "/bin", "DB": PLANTED.decode()}
    assert PLANTED.decode() not in repr(resolved.used)


def test_templates_render_secrets_and_refuse_python_internals() -> None:
    rendered = render_template('pw={{ secret("db/pw") }}', source())
    assert rendered.content == b"pw=" + PLANTED
    assert rendered.used == {"db/pw": 3}
    assert PLANTED.decode() not in repr(rendered)
    for text in ("{{ secret.__globals__ }}", "{{ ''.__class__.__mro__ }}", "{{ nope() }}"):
        with pytest.raises(TemplateError):
            render_template(text, source())
    with pytest.raises(SecretError):
        render_template('{{ secret("db/other") }}', source())


def test_hook_state_survives_a_restart_and_a_damaged_file_means_act_again(tmp_path: Path) -> None:
    path = tmp_path / "hooks.state.json"
    HookState(path).set("reload", frozenset({"db/pw@3"}))
    assert path.stat().st_mode & 0o777 == 0o600
    assert HookState(path).get("reload") == frozenset({"db/pw@3"})
    path.write_text("{not json")
    assert HookState(path).get("reload") is None
    assert ActionResult(None, 0.1).ok and not ActionResult("timeout", 5.0).ok


def test_a_home_without_tables_has_no_consumers_and_a_bad_table_is_refused(
    tmp_path: Path,
) -> None:
    home = tmp_path / "ag"
    request = str(tmp_path / "ag.request")
    init = run_relay(
        "agent", "init", "--home", str(home), "--name", "plant7", "--request-out", request
    )
    assert init.status == 0, init.err
    assert read_tables(home / "relay.toml") == ([], [])
    from relay.home import Home

    assert Consumers(Home.open(home, "agent")).hooks is None
    (tmp_path / "bad.toml").write_text('[[hooks]]\npaths = ["db/*"]\n')
    with pytest.raises(RelayError) as bad:
        read_tables(tmp_path / "bad.toml")
    assert bad.value.code == "bad_config"
