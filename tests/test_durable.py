"""relay.transport.durable: a batch of new files made durable by one syncfs where that is as good
as an fsync per file, else by the fsync calls."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relay.transport import durable
from relay.transport.folder import write_many_atomic


@pytest.fixture(autouse=True)
def _fresh_decisions() -> Iterator[None]:
    durable._decided.clear()
    yield
    durable._decided.clear()


def _open_new(folder: Path, count: int) -> list[int]:
    fds = []
    for i in range(count):
        fd = os.open(folder / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"x" * 100)
        fds.append(fd)
    return fds


def _synced(folder: Path, count: int, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[int]]:
    """Which calls :func:`durable.sync_new_files` made for ``count`` new files in ``folder``
    (and their descriptors, closed since)."""
    fds = _open_new(folder, count)
    try:
        calls = _Calls(monkeypatch)
        durable.sync_new_files(fds, None)
    finally:
        for fd in fds:
            os.close(fd)
    return calls, fds


class _Calls:
    """Which of syncfs and fsync a call made."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.syncfs: list[int] = []
        self.fsync: list[int] = []
        real_syncfs, real_fsync = durable._syncfs, os.fsync

        def syncfs(fd: int) -> None:
            self.syncfs.append(fd)
            real_syncfs(fd)

        def fsync(fd: int) -> None:
            self.fsync.append(fd)
            real_fsync(fd)

        monkeypatch.setattr(durable, "_syncfs", syncfs)
        monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize(
    ("release", "reports"),
    [
        ("5.7.19", False),
        ("5.8.0", True),
        ("5.10.0-28-amd64", True),
        ("6.18.44-fc-v782", True),
        ("5.7-rc1", False),  # not "5.71"
        ("5.8-rc1", True),
        ("4.19.0", False),
        ("5", False),
        ("unknown", False),
    ],
)
def test_only_kernels_that_report_a_failed_writeback_use_syncfs(
    release: str, reports: bool
) -> None:
    assert durable._kernel_reports_errors(release) is reports


def test_a_batch_on_a_local_file_system_is_synced_with_one_syncfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = os.open(tmp_path, os.O_RDONLY)
    try:
        assert durable.fs_type(probe) in durable.SYNCFS_FILE_SYSTEMS  # ext4 or tmpfs here
    finally:
        os.close(probe)
    calls, fds = _synced(tmp_path, durable.SYNCFS_MIN_FILES, monkeypatch)
    assert calls.syncfs == [fds[0]] and calls.fsync == []


def test_a_small_batch_is_synced_file_by_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls, fds = _synced(tmp_path, durable.SYNCFS_MIN_FILES - 1, monkeypatch)
    assert calls.syncfs == [] and sorted(calls.fsync) == sorted(fds)


@pytest.mark.parametrize(
    ("release", "fs"),
    [("5.4.0", durable.EXT4), ("6.1.0", 0x6969), ("6.1.0", 0x65735546), ("6.1.0", None)],
    ids=["old-kernel", "nfs", "fuse", "no-fstatfs"],
)
def test_elsewhere_every_file_is_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, release: str, fs: int | None
) -> None:
    monkeypatch.setattr(durable, "fs_type", lambda fd: fs)
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("", "", release, "", "")))
    calls, fds = _synced(tmp_path, 20, monkeypatch)
    assert calls.syncfs == [] and sorted(calls.fsync) == sorted(fds)


def test_a_failed_syncfs_fails_the_write_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(name: str) -> Callable[..., int] | None:
        def call(*_args: Any) -> int:
            ctypes.set_errno(errno.EIO)
            return -1

        return call if name == "syncfs" else real(name)

    real = durable._libc_function
    monkeypatch.setattr(durable, "_libc_function", failing)
    out = tmp_path / "out"
    with pytest.raises(OSError) as caught:
        write_many_atomic(out, [(f"b{i}.bundle", b"data") for i in range(10)])
    assert caught.value.errno == errno.EIO
    assert list(out.iterdir()) == []  # no file renamed into place, no temp file left


@pytest.mark.slow
def test_the_system_calls_are_what_the_rule_says(tmp_path: Path) -> None:
    """Under strace: a group of files costs one syncfs and no fsync of a file; the folder is
    still fsynced after the renames."""
    script = (
        "import sys; from pathlib import Path\n"
        "from relay.transport.folder import write_many_atomic\n"
        "write_many_atomic(Path(sys.argv[1]), [(f'b{i}.bundle', b'x') for i in range(50)])\n"
    )
    trace = tmp_path / "trace"
    strace = shutil.which("strace")
    assert strace is not None, "strace is installed by scripts/test-deps"
    traced = "trace=syncfs,fsync,rename,renameat,renameat2"
    out = str(tmp_path / "out")
    argv = [strace, "-f", "-qq", "-e", traced, "-o", str(trace), sys.executable, "-c", script, out]
    subprocess.run(argv, check=True)
    calls = [
        line.split(None, 1)[1].split("(", 1)[0].replace("renameat2", "rename")
        for line in trace.read_text().splitlines()
    ]
    calls = [c.replace("renameat", "rename") for c in calls]
    assert calls.count("syncfs") == 1 and calls.count("rename") == 50
    assert calls.count("fsync") == 1  # the folder's, after the renames
    assert calls.index("syncfs") < calls.index("rename") < calls.index("fsync")


@pytest.mark.slow
def test_reading_folders_does_not_load_ctypes() -> None:
    """The agent's service reads its inbox through the folder transport and never syncs a group
    of files: ctypes (about 4 ms and its memory) is loaded only by a group's sync."""
    script = "import sys, relay.transport.folder; print('ctypes' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True)
    assert found.stdout.strip() == b"False"
