"""Rotation meets consumption: a pre-staged successor switches on the agent's clock with no new
bundle, and the change hooks act on the switch like on an import (render, then the reload)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_relay
from tests.consume_kit import PYTHON, launch_agent, planted, prepare_agent, wait_for

pytestmark = pytest.mark.slow  # runs `relay agent run` and a hook as real processes

PATH = "db/web/password"


def test_a_prestaged_switch_renders_and_runs_the_hooks(tmp_path: Path) -> None:
    template = tmp_path / "app.conf.tmpl"
    template.write_text('password={{ secret("db/web/password") }}\n')
    out = tmp_path / "run" / "app.conf"
    out.parent.mkdir()
    ran = tmp_path / "ran.log"
    script = tmp_path / "reload.py"
    script.write_text(
        f"import os\nopen({str(ran)!r}, 'a').write(os.environ['RELAY_CHANGED'] + '\\n')\n"
    )
    toml = f"""
[[hooks]]
name = "config"
paths = ["db/web/*"]
render = {{ template = "{template}", out = "{out}", mode = "0600" }}

[[hooks]]
name = "reload"
paths = ["db/web/*"]
run = {json.dumps([PYTHON, str(script)])}
"""
    pair, inbox, _ = prepare_agent(tmp_path, toml)
    # With the default agent.clock_skew (5m) a successor due in seconds is current at once, at
    # its import: "staged, not current" below would then hold only while the hooks' 2 s
    # debounce lasts. With 1 s it is pending until 5 s after the put.
    assert pair.agent("config", "set", "agent.clock_skew", "1s").status == 0
    old, new = planted("OLD"), planted("NEW")
    daemon = launch_agent(pair, inbox)
    try:
        daemon.drop(daemon.publish({PATH: old}))
        wait_for(
            lambda: out.exists() and out.read_bytes() == b"password=" + old + b"\n", watch=tmp_path
        )
        wait_for(
            lambda: ran.exists() and ran.read_text() == f"{PATH}@1\n",
            what="first hook",
            watch=tmp_path,
        )
        staged = run_relay(
            "gateway", "secret", "put", "--home", str(pair.gw), PATH, "-",
            "--activates-at", "6s", stdin=new,
        )  # fmt: skip
        assert staged.status == 0, staged.err
        daemon.drop(daemon.publish({}))
        daemon.wait_event("bundle.applied", count=2)
        # staged, not current: the rendered file and the hook still see version 1
        assert daemon.notified_events("secret.activated") == 0, "switched at the import"
        assert out.read_bytes() == b"password=" + old + b"\n"
        daemon.wait_event("secret.activated", timeout=30)
        wait_for(
            lambda: out.read_bytes() == b"password=" + new + b"\n", what="re-render", watch=tmp_path
        )
        wait_for(
            lambda: ran.read_text() == f"{PATH}@1\n{PATH}@2\n",
            what="hook on the switch",
            watch=tmp_path,
        )
        assert {(e["hook"]) for e in daemon.events("hook.ran")} == {"config", "reload"}
    finally:
        daemon.stop()
    assert old not in daemon.log().encode() and new not in daemon.log().encode()
