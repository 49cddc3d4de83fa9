"""``relay agent exec``: values reach CMD's environment only; stdio, signals and exit status are
CMD's; a refused secret or a missing command stops before CMD starts."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.agent_daemon import start_daemon
from tests.conftest import run_process
from tests.consume_kit import (
    PYTHON,
    audit_records,
    clock_past,
    every_file_bytes,
    fields_of,
    loaded_pair,
    planted,
    relay_env,
    spawn,
)

pytestmark = pytest.mark.slow  # runs relay and CMD as real processes

CHILD = str(Path(__file__).with_name("consume_child.py"))


def exec_args(home: Path, *env: str) -> list[str]:
    return ["agent", "exec", "--home", str(home), *[a for e in env for a in ("--env", e)], "--"]


def test_values_reach_the_child_environment_only(tmp_path: Path) -> None:
    value = planted("DB")
    pair = loaded_pair(tmp_path, {"db/web/password": value})
    proc = spawn(
        *exec_args(pair.ag, "DB_PASSWORD=db/web/password"),
        PYTHON,
        CHILD,
        "echo",
        "DB_PASSWORD",
        "7",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(b"from-stdin\n", timeout=60)
    assert proc.returncode == 7
    digest, argv_state, echoed = out.decode().splitlines()
    assert digest == hashlib.sha256(value).hexdigest()
    assert argv_state == "argv-clean"
    assert echoed == "from-stdin"
    assert err == b"to-stderr\n"
    records = audit_records(pair)
    read = [fields_of(r) for r in records if r["type"] == "secret.read"]
    assert read[-1]["path"] == "db/web/password"
    assert read[-1]["via"] == "exec"
    started = [fields_of(r) for r in records if r["type"] == "exec.started"]
    assert started[-1]["versions"] == "db/web/password@1"
    blobs = [out, err, json.dumps(records).encode(), *every_file_bytes(pair.gw, pair.ag)]
    assert not any(value in blob for blob in blobs)


def test_exec_replaces_relay_so_signal_death_is_cmds(tmp_path: Path) -> None:
    pair = loaded_pair(tmp_path, {"db/web/password": planted()})
    proc = spawn(
        *exec_args(pair.ag, "P=db/web/password"), PYTHON, CHILD, "selfkill", str(signal.SIGUSR2)
    )
    assert proc.wait(timeout=60) == -signal.SIGUSR2


def test_cmd_in_place_of_relay_is_the_main_process_and_keeps_notify_socket(
    tmp_path: Path,
) -> None:
    pair = loaded_pair(tmp_path, {"db/web/password": planted()})
    proc = spawn(
        *exec_args(pair.ag, "P=db/web/password"),
        PYTHON,
        "-c",
        "import os; print(os.getpid(), os.environ.get('NOTIFY_SOCKET'))",
        env=relay_env(NOTIFY_SOCKET="@relay-test-manager"),
        stdout=subprocess.PIPE,
    )
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    # same pid: CMD is the service now, so it keeps the manager's socket (ADR 0020)
    assert out.decode().split() == [str(proc.pid), "@relay-test-manager"]


def test_env_file_template(tmp_path: Path) -> None:
    user, password = planted("U"), planted("P")
    pair = loaded_pair(tmp_path, {"db/web/user": user, "db/web/password": password})
    template = tmp_path / "env.tmpl"
    template.write_text(
        '# the build needs these\nDB_USER={{ secret("db/web/user") }}\n'
        'DB_VERSION={{ secret_meta("db/web/user").version }}\n'
        'DB_PASSWORD={{ secret("db/web/password") }}\n'
    )
    proc = spawn(
        "agent",
        "exec",
        "--home",
        str(pair.ag),
        "--env-file",
        str(template),
        "--",
        PYTHON,
        CHILD,
        "echo",
        "DB_PASSWORD",
        "0",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert out.decode().splitlines()[0] == hashlib.sha256(password).hexdigest()


def refused(
    pair_home: Path, tmp_path: Path, path: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[bytes], Path]:
    marker = tmp_path / "ran"
    proc = subprocess.run(
        [
            PYTHON,
            "-m",
            "relay",
            *exec_args(pair_home, f"X={path}"),
            "touch",
            str(marker),
        ],
        capture_output=True,
        env=env or relay_env(),
        timeout=60,
        check=False,
    )
    return proc, marker


def test_missing_secret_stops_before_cmd(tmp_path: Path) -> None:
    pair = loaded_pair(tmp_path, {"db/web/password": planted()})
    proc, marker = refused(pair.ag, tmp_path, "db/web/absent")
    assert proc.returncode == 1
    assert proc.stderr.decode().startswith("relay: error: not_found: ")
    assert not marker.exists()
    denied = [fields_of(r) for r in audit_records(pair, "secret.denied")]
    assert denied[-1] == {**denied[-1], "path": "db/web/absent", "reason": "not_found"}


def test_expired_secret_stops_before_cmd(tmp_path: Path) -> None:
    pair = loaded_pair(tmp_path, {"db/web/temp": planted()}, "--ttl", "1h")
    proc, marker = refused(pair.ag, tmp_path, "db/web/temp")
    assert proc.returncode == 0, proc.stderr  # valid now: only the expiry refuses it below
    marker.unlink()
    expires = json.loads(pair.agent("secret", "list", "--json").out)[0]["expires_at"]
    proc, marker = refused(pair.ag, tmp_path, "db/web/temp", clock_past(expires))
    assert proc.returncode == 1
    assert proc.stderr.decode().startswith("relay: error: expired: ")
    assert not marker.exists()


def test_stale_fail_closed_secret_stops_before_cmd(tmp_path: Path) -> None:
    pair = loaded_pair(tmp_path, {"db/web/critical": planted(), "db/web/relaxed": planted()})
    assert pair.agent("config", "set", "agent.max_staleness", "1h").status == 0
    assert pair.agent("config", "set", "agent.fail_closed", "db/web/critical").status == 0
    proc, marker = refused(pair.ag, tmp_path, "db/web/critical")
    assert proc.returncode == 0, proc.stderr  # fresh now: only staleness refuses it below
    marker.unlink()
    imported = json.loads(pair.agent("status", "--json").out)["last_import"]
    stale = clock_past(imported + 3600)
    proc, marker = refused(pair.ag, tmp_path, "db/web/critical", stale)
    assert proc.returncode == 1
    assert proc.stderr.decode().startswith("relay: error: stale: ")
    assert not marker.exists()
    proc, marker = refused(pair.ag, tmp_path, "db/web/relaxed", stale)
    assert proc.returncode == 0, proc.stderr
    assert marker.exists()


def test_missing_command_is_127_after_no_start(tmp_path: Path) -> None:
    pair = loaded_pair(tmp_path, {"db/web/password": planted()})
    result = run_process(*exec_args(pair.ag, "P=db/web/password"), "no-such-command-xyz")
    assert result.status == 127
    assert result.err.startswith("relay: error: command_not_found: no-such-command-xyz")
    assert not audit_records(pair, "exec.started")


def test_bad_env_option_is_a_usage_error(tmp_path: Path) -> None:
    pair = loaded_pair(tmp_path, {"db/web/password": planted()})
    result = run_process(*exec_args(pair.ag, "1BAD=db/web/password"), "true")
    assert result.status == 2
    assert result.err.startswith("relay: error: bad_env: ")


def test_api_source_ungranted_is_forbidden_and_credentials_come_from_a_file(
    tmp_path: Path,
) -> None:
    value = planted("API")
    daemon = start_daemon(tmp_path, apps={"web": ["db/web/*"]})
    try:
        daemon.drop(daemon.publish({"db/web/password": value, "db/other/password": planted()}))
        daemon.wait_event("bundle.applied")
        creds = tmp_path / "web.creds"
        creds.write_text(json.dumps(daemon.apps["web"]))
        base = ["agent", "exec", "--api", daemon.url, "--credentials", str(creds)]
        ok = subprocess.run(
            [
                PYTHON,
                "-m",
                "relay",
                *base,
                "--env",
                "P=db/web/password",
                "--",
                PYTHON,
                CHILD,
                "echo",
                "P",
                "0",
            ],
            capture_output=True,
            env=relay_env(),
            timeout=60,
            check=False,
        )
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.decode().splitlines()[:2] == [
            hashlib.sha256(value).hexdigest(),
            "argv-clean",
        ]
        marker = tmp_path / "ran"
        denied = subprocess.run(
            [
                PYTHON,
                "-m",
                "relay",
                *base,
                "--env",
                "P=db/other/password",
                "--",
                "touch",
                str(marker),
            ],
            capture_output=True,
            env=relay_env(),
            timeout=60,
            check=False,
        )
        assert denied.returncode == 1
        assert denied.stderr.decode().startswith("relay: error: forbidden: ")
        assert not marker.exists()
        env_creds = relay_env(
            RELAY_CLIENT_ID=daemon.apps["web"]["client_id"],
            RELAY_CLIENT_SECRET=daemon.apps["web"]["client_secret"],
        )
        from_env = subprocess.run(
            [
                PYTHON,
                "-m",
                "relay",
                "agent",
                "exec",
                "--api",
                daemon.url,
                "--env",
                "P=db/web/password",
                "--",
                PYTHON,
                "-c",
                "import os; print(sorted(k for k in os.environ if k.startswith('RELAY_')))",
            ],
            capture_output=True,
            env=env_creds,
            timeout=60,
            check=False,
        )
        assert from_env.returncode == 0, from_env.stderr
        assert from_env.stdout == b"['RELAY_CLIENT_ID']\n"  # the secret is withheld from CMD
    finally:
        daemon.stop()
    assert value not in daemon.log().encode()
