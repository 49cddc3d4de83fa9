"""``scripts/test-deps``, which ``make test`` runs first: without root and with something missing,
it stops at once with one line naming what is missing (and installs nothing)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs the dependency script and asks PostgreSQL

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "test-deps"
PRESENT = ("bash", "id", "env", "cat", "sed", "grep", "seq", "sleep", "ls", "sshd", "ip")


@pytest.fixture
def tools_dir() -> Iterator[Path]:
    """A PATH holding only some tools (rsyslogd, nft and PostgreSQL's are missing) and a copy of
    the script, in a folder an unprivileged user can reach (pytest's tmp_path is private to root,
    and so may be the checkout)."""
    with tempfile.TemporaryDirectory(prefix="relay-test-deps-") as name:
        folder = Path(name)
        folder.chmod(0o755)
        shutil.copy(SCRIPT, folder / "test-deps")
        for tool in PRESENT:
            found = shutil.which(tool, path=f"{os.environ['PATH']}:/usr/sbin:/sbin")
            assert found is not None, tool
            (folder / tool).symlink_to(found)
        yield folder


def as_unprivileged() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_without_root_a_missing_package_is_one_line_and_nothing_is_installed(
    tools_dir: Path,
) -> None:
    env = {"PATH": str(tools_dir), "RELAY_SBIN_PATH": ""}
    proc = subprocess.run(
        [
            *as_unprivileged(),
            "/usr/bin/env",
            "-i",
            *[f"{k}={v}" for k, v in env.items()],
            "bash",
            str(tools_dir / "test-deps"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("relay: test dependencies missing: ")
    named = line.removeprefix("relay: test dependencies missing: ").split(" (")[0].split()
    assert {"rsyslog", "nftables", "postgresql"} <= set(named)
    assert not {"openssh-server", "iproute2"} & set(named)
    assert "installing" not in proc.stderr


def test_on_this_machine_everything_is_there() -> None:
    proc = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (proc.returncode, proc.stderr) == (0, "")
