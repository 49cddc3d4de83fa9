"""Each how-to of ``docs/consumption.md``, end to end through real processes, using the very
files under ``docs/examples/`` the page shows."""

from __future__ import annotations

import hashlib
import json
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from tests.consume_kit import (
    PYTHON,
    launch_agent,
    loaded_pair,
    planted,
    prepare_agent,
    publish,
    relay_env,
    wait_for,
)

pytestmark = pytest.mark.slow  # runs relay and CMD as real processes

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
CHILD = str(Path(__file__).with_name("consume_child.py"))


def test_howto_ci_build_script(tmp_path: Path) -> None:
    token = planted("TOKEN")
    pair = loaded_pair(tmp_path, {"ci/deploy/token": token})
    proc = subprocess.run(
        [
            PYTHON,
            "-m",
            "relay",
            "agent",
            "exec",
            "--home",
            str(pair.ag),
            "--env",
            "DEPLOY_TOKEN=ci/deploy/token",
            "--",
            str(EXAMPLES / "ci-build.sh"),
        ],
        capture_output=True,
        env=relay_env(),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() == (
        f"building with a deploy token of {len(token)} characters\nbuild done\n"
    )
    without = subprocess.run([str(EXAMPLES / "ci-build.sh")], capture_output=True, check=False)
    assert without.returncode != 0


def test_howto_legacy_config_file_with_reload(tmp_path: Path) -> None:
    template = tmp_path / "legacy.conf.tmpl"
    template.write_bytes((EXAMPLES / "legacy.conf.tmpl").read_bytes())
    run_dir = tmp_path / "run" / "legacy"
    run_dir.mkdir(parents=True)
    hooks = (EXAMPLES / "legacy-hooks.toml").read_text()
    hooks = hooks.replace("/etc/relay/legacy.conf.tmpl", str(template))
    hooks = hooks.replace("/run/legacy", str(run_dir))
    conf, pidfile, loads = run_dir / "legacy.conf", run_dir / "legacy.pid", tmp_path / "loads"
    app = subprocess.Popen([PYTHON, CHILD, "legacy", str(conf), str(pidfile), str(loads)])
    pair, inbox, _ = prepare_agent(tmp_path, hooks)
    daemon = launch_agent(pair, inbox)
    user, p1, p2 = planted("USER"), planted("P1"), planted("P2")
    try:
        wait_for(loads.exists, what="legacy app started", watch=tmp_path)
        daemon.drop(daemon.publish({"db/legacy/user": user, "db/legacy/password": p1}))
        wait_for(lambda: len(loads.read_text().split()) == 2, what="first reload", watch=tmp_path)
        text = conf.read_text()
        assert f'user = {user.decode()}\npassword = "{p1.decode()}"\n# version 1\n' in text
        assert loads.read_text().split()[1] == hashlib.sha256(conf.read_bytes()).hexdigest()
        daemon.drop(daemon.publish({"db/legacy/password": p2}))
        wait_for(
            lambda: len(loads.read_text().split()) == 3,
            what="reload after rotation",
            watch=tmp_path,
        )
        assert f'password = "{p2.decode()}"\n# version 2\n' in conf.read_text()
        assert loads.read_text().split()[2] == hashlib.sha256(conf.read_bytes()).hexdigest()
    finally:
        daemon.stop()
        app.terminate()
        app.wait()


def test_howto_systemd_service_restarted_on_rotation(tmp_path: Path) -> None:
    unit = (EXAMPLES / "app.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    v1, v2 = planted("V1"), planted("V2")
    pair = loaded_pair(tmp_path, {"db/app/password": v1})
    state = tmp_path / "served"
    assert argv[0] == "/usr/local/bin/relay"
    cut = argv.index("--")
    command = [PYTHON, "-m", "relay", *argv[1:cut], "--poll", "200ms", "--"]
    command = [str(pair.ag) if a == "/var/lib/relay/agent" else a for a in command]
    command += [PYTHON, CHILD, "serve", "DB_PASSWORD", str(state)]
    proc = subprocess.Popen(command, env=relay_env())
    try:
        wait_for(state.exists, what="service started", watch=tmp_path)
        publish(pair, {"db/app/password": v2})
        wait_for(
            lambda: len(state.read_text().splitlines()) == 2,
            what="restart on rotation",
            watch=tmp_path,
        )
        digests = [line.split()[1] for line in state.read_text().splitlines()]
        assert digests == [hashlib.sha256(v).hexdigest() for v in (v1, v2)]
        proc.send_signal(signal.SIGTERM)  # systemctl stop (KillMode=mixed: the main process)
        assert proc.wait(30) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()


def test_howto_python_app_with_the_client(tmp_path: Path) -> None:
    pair, inbox, creds = prepare_agent(tmp_path, apps={"app": ["db/app/*"]})
    daemon = launch_agent(pair, inbox, apps=creds)
    value = planted("APP")
    try:
        daemon.drop(daemon.publish({"db/app/password": value, "db/other/password": planted()}))
        daemon.wait_event("bundle.applied")
        secret_file = tmp_path / "client_secret"
        secret_file.write_text(creds["app"]["client_secret"] + "\n")
        env = relay_env(
            RELAY_API_URL=daemon.url,
            RELAY_CLIENT_ID=creds["app"]["client_id"],
            RELAY_CLIENT_SECRET_FILE=str(secret_file),
            PYTHONPATH=str(ROOT),
        )
        app = [PYTHON, str(EXAMPLES / "python_app.py")]
        ok = subprocess.run(app, capture_output=True, env=env, timeout=60, check=False)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.decode() == f"read db/app/password version 1 ({len(value)} characters)\n"
        other = [*app, "db/other/password"]
        refused = subprocess.run(other, capture_output=True, env=env, timeout=60, check=False)
        assert refused.returncode == 1
        assert refused.stderr.decode() == "cannot read db/other/password: forbidden\n"
    finally:
        daemon.stop()


def test_howto_curl_reads_credentials_from_files(tmp_path: Path) -> None:
    pair, inbox, creds = prepare_agent(tmp_path, apps={"app": ["db/app/*"]})
    daemon = launch_agent(pair, inbox, apps=creds)
    value = planted("CURL")
    try:
        daemon.drop(daemon.publish({"db/app/password": value}))
        daemon.wait_event("bundle.applied")
        (tmp_path / "client.json").write_text(json.dumps(creds["app"]))
        script = _curl_block()
        proc = subprocess.run(
            ["sh", "-eu", "-c", script],
            cwd=tmp_path,
            env={**relay_env(), "AGENT": daemon.url},
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["value"] == value.decode()
        assert "curl -sf --data-binary @-" in script  # the secret travels on stdin
    finally:
        daemon.stop()


def _curl_block() -> str:
    """The shell block under "curl" in docs/consumption.md."""
    text = (ROOT / "docs" / "consumption.md").read_text()
    return text.split("<!-- curl-example -->", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
