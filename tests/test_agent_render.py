"""``relay agent render``: a sandboxed template, an atomic write only when the content changes,
and every fault leaves the old file as it was."""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest

from tests.agent_daemon import start_daemon
from tests.conftest import Pair, Result, run_process
from tests.consume_kit import (
    PYTHON,
    audit_records,
    fields_of,
    loaded_pair,
    planted,
    publish,
    relay_env,
    until_wall_clock,
)

pytestmark = pytest.mark.slow  # runs relay and CMD as real processes


def render(home: Path, template: Path, out: Path, *extra: str) -> Result:
    return run_process(
        "agent", "render", "--home", str(home), str(template), "--out", str(out), *extra
    )


def test_render_writes_once_then_only_on_change(tmp_path: Path) -> None:
    user, password = planted("U"), planted("P")
    pair = loaded_pair(tmp_path, {"db/web/user": user, "db/web/password": password})
    template = tmp_path / "app.conf.tmpl"
    template.write_text(
        '[db]\nuser = {{ secret("db/web/user") }}\n'
        'password = {{ secret("db/web/password") | tojson }}\n'
        'version = {{ secret_meta("db/web/password").version }}\n'
    )
    out = tmp_path / "run" / "app.conf"
    out.parent.mkdir()
    first = render(pair.ag, template, out, "--mode", "0640")
    assert first.status == 0, first.err
    assert first.out == f"wrote {out}\n"
    expected = f'[db]\nuser = {user.decode()}\npassword = "{password.decode()}"\nversion = 1\n'
    assert out.read_text() == expected
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    inode = out.stat().st_ino
    again = render(pair.ag, template, out, "--mode", "0640")
    assert again.out == f"unchanged {out}\n"
    assert out.stat().st_ino == inode
    new_password = planted("P2")
    publish(pair, {"db/web/password": new_password})
    third = render(pair.ag, template, out, "--mode", "0640")
    assert third.out == f"wrote {out}\n"
    assert f'password = "{new_password.decode()}"\nversion = 2\n' in out.read_text()
    assert out.stat().st_ino != inode  # a new file renamed over the old one
    assert sorted(p.name for p in out.parent.iterdir()) == ["app.conf"]  # no temp left
    rendered = [fields_of(r) for r in audit_records(pair, "template.rendered")]
    assert [r["written"] for r in rendered] == [True, False, True]
    assert rendered[-1]["versions"] == "db/web/password@2 db/web/user@1"
    for blob in (first.stdout + first.stderr, json.dumps(audit_records(pair)).encode()):
        assert password not in blob
        assert user not in blob


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pair, bytes]:
    user = planted("U")
    return loaded_pair(tmp_path_factory.mktemp("shared"), {"db/web/user": user}), user


@pytest.mark.parametrize(
    ("template", "code"),
    [
        ('{{ secret("db/web/absent") }}', "not_found"),
        ("{{ os }}", "template_error"),
        ('{{ secret("db/web/user") | attr("__class__") }}', "template_error"),
        ('{{ secret("db/web/user").__class__.__mro__ }}', "template_forbidden"),
        ('{{ secret_meta("db/web/user").__class__ }}', "template_forbidden"),
        ("{{ lipsum() }}", "template_error"),
        ('{{ secret_meta("db/web/user")[secret("db/web/user")] }}', "template_error"),
        ('{{ secret("../etc/passwd") }}', "template_error"),
        ("{% for x in %}", "template_error"),
        ("{{ cycler.__init__.__globals__ }}", "template_forbidden"),
    ],
)
def test_refused_templates_write_nothing_and_keep_the_old_file(
    shared: tuple[Pair, bytes], tmp_path: Path, template: str, code: str
) -> None:
    pair, user = shared
    source = tmp_path / "t.tmpl"
    source.write_text(f"before\n{template}\nafter\n")
    out = tmp_path / "rendered" / "app.conf"
    out.parent.mkdir()
    out.write_text("old content\n")
    result = render(pair.ag, source, out)
    assert result.status == 1
    assert result.err.startswith(f"relay: error: {code}: "), result.err
    assert len(result.err.splitlines()) == 1
    assert user.decode() not in result.err
    assert out.read_text() == "old content\n"
    assert [p.name for p in out.parent.iterdir()] == ["app.conf"]


def test_expired_path_keeps_the_old_file(tmp_path: Path) -> None:
    pair = loaded_pair(tmp_path, {"db/web/temp": planted()}, "--ttl", "1s")
    expires = json.loads(pair.agent("secret", "list", "--json").out)[0]["expires_at"]
    until_wall_clock(expires + 1)
    source = tmp_path / "t.tmpl"
    source.write_text('{{ secret("db/web/temp") }}')
    out = tmp_path / "app.conf"
    out.write_text("old\n")
    result = render(pair.ag, source, out)
    assert result.err.startswith("relay: error: expired: ")
    assert out.read_text() == "old\n"


def test_unwritable_folder_is_write_failed(tmp_path: Path) -> None:
    pair = loaded_pair(tmp_path, {"db/web/user": planted()})
    source = tmp_path / "t.tmpl"
    source.write_text('{{ secret("db/web/user") }}')
    folder = tmp_path / "ro"
    folder.mkdir()
    out = folder / "app.conf"
    out.write_text("old\n")
    args = ["agent", "render", "--home", str(pair.ag), str(source), "--out", str(out)]
    if os.getuid() == 0:  # root writes anywhere: make the folder a read-only mount
        script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
        argv = ["unshare", "-m", "sh", "-c", script, str(folder), PYTHON, "-m", "relay", *args]
    else:
        folder.chmod(0o500)
        argv = [PYTHON, "-m", "relay", *args]
    proc = subprocess.run(argv, capture_output=True, env=relay_env(), timeout=60, check=False)
    folder.chmod(0o700)
    assert proc.returncode == 1
    assert proc.stderr.decode().startswith(f"relay: error: write_failed: cannot write in {folder}")
    assert out.read_text() == "old\n"
    missing = render(pair.ag, source, tmp_path / "nowhere" / "app.conf")
    assert missing.err.startswith("relay: error: write_failed: ")


def test_render_through_the_api_refuses_an_ungranted_path(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, apps={"web": ["db/web/*"]})
    try:
        value = planted()
        daemon.drop(daemon.publish({"db/web/user": value, "db/other/user": planted()}))
        daemon.wait_event("bundle.applied")
        env = relay_env(
            RELAY_CLIENT_ID=daemon.apps["web"]["client_id"],
            RELAY_CLIENT_SECRET=daemon.apps["web"]["client_secret"],
        )
        out = tmp_path / "app.conf"
        source = tmp_path / "t.tmpl"
        source.write_text('u={{ secret("db/web/user") }}\n')
        base = [PYTHON, "-m", "relay", "agent", "render", "--api", daemon.url, str(source)]
        ok = subprocess.run([*base, "--out", str(out)], env=env, capture_output=True, check=False)
        assert ok.returncode == 0, ok.stderr
        assert out.read_bytes() == b"u=" + value + b"\n"
        source.write_text('u={{ secret("db/other/user") }}\n')
        denied = subprocess.run(
            [*base, "--out", str(out)], env=env, capture_output=True, check=False
        )
        assert denied.stderr.decode().startswith("relay: error: forbidden: ")
        assert out.read_bytes() == b"u=" + value + b"\n"
    finally:
        daemon.stop()


def test_owner_and_mode_of_the_output(shared: tuple[Pair, bytes], tmp_path: Path) -> None:
    pair, _ = shared
    source = tmp_path / "t.tmpl"
    source.write_text('{{ secret_meta("db/web/user").version }}\n')
    out = tmp_path / "owned.conf"
    if os.getuid() != 0:  # only root may give a file away
        result = render(pair.ag, source, out, "--owner", "root")
        assert result.err.startswith("relay: error: write_failed: ")
        assert not out.exists()
        return
    nobody = pwd.getpwnam("nobody")
    result = render(pair.ag, source, out, "--owner", f"nobody:{nobody.pw_gid}", "--mode", "0440")
    assert result.status == 0, result.err
    info = out.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (
        nobody.pw_uid,
        nobody.pw_gid,
        0o440,
    )
    again = render(pair.ag, source, out, "--owner", f"nobody:{nobody.pw_gid}", "--mode", "0440")
    assert again.out == f"unchanged {out}\n"
    unknown = render(pair.ag, source, out, "--owner", "no-such-user-xyz")
    assert unknown.status == 2
    assert unknown.err.startswith("relay: error: bad_owner: ")
