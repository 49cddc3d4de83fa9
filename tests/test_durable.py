"""relay.transport.durable: a batch of new files made durable by one syncfs where that is as good
as an fsync per file, else by the fsync calls."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relay.errors import TransportError
from relay.transport import durable, folder
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
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, naming: str
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
    traced = "trace=syncfs,fsync,rename,renameat,renameat2,link,linkat"
    out = str(tmp_path / "out")
    argv = [strace, "-f", "-qq", "-e", traced, "-o", str(trace), sys.executable, "-c", script, out]
    subprocess.run(argv, check=True)
    calls = [line.split(None, 1)[1].split("(", 1)[0] for line in trace.read_text().splitlines()]
    # written unnamed (O_TMPFILE), so named by a link each and never renamed
    assert calls.count("syncfs") == 1 and calls.count("linkat") == 50
    assert not [c for c in calls if c.startswith("rename")]
    assert calls.count("fsync") == 1  # the folder's, after the links
    assert calls.index("syncfs") < calls.index("linkat") < calls.index("fsync")


@pytest.fixture(params=["unnamed", "named"])
def naming(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Both ways a group is written: unnamed files linked to their names, and temp names
    renamed (as on a file system without ``O_TMPFILE``, here by hiding ``/proc/self/fd``)."""
    if request.param == "named":
        monkeypatch.setattr(folder, "_PROC_FD", str(tmp_path / "no-proc"))
    return str(request.param)


def test_a_group_replaces_the_files_already_there_whole(tmp_path: Path, naming: str) -> None:
    out = tmp_path / "out"
    write_many_atomic(out, [(f"b{i}.bundle", b"old" * i) for i in range(12)])
    write_many_atomic(out, [(f"b{i}.bundle", b"new" * (i + 1)) for i in range(0, 12, 2)])
    for i in range(12):
        want = b"new" * (i + 1) if i % 2 == 0 else b"old" * i
        assert (out / f"b{i}.bundle").read_bytes() == want, naming
        assert (out / f"b{i}.bundle").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in out.iterdir()) == sorted(f"b{i}.bundle" for i in range(12))


def test_a_begun_group_is_synced_on_the_sync_thread_and_named_by_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, naming: str
) -> None:
    """ADR 0026: ``begin_many`` returns with the files written and their sync still running on
    the destination's sync thread; nothing is named before ``finish``."""
    release, threads = threading.Event(), []
    real = folder.sync_new_files

    def held(fds: list[int], pool: Any) -> None:
        threads.append(threading.current_thread().name)
        assert release.wait(timeout=30), "the sync ran in the caller's thread"
        real(fds, pool)

    monkeypatch.setattr(folder, "sync_new_files", held)
    out = tmp_path / "out"
    items = [(f"b{i}.bundle", b"data %d" % i) for i in range(10)]
    destination = folder.FolderDestination(out)
    try:
        group = destination.begin_many(items)
        assert list(out.glob("*.bundle")) == []  # written, not named
        release.set()
        paths = group.finish()
    finally:
        destination.close()
    assert len(threads) == 1 and threads[0].startswith("relay-sync")
    assert [p.name for p in paths] == [name for name, _ in items]
    assert sorted(p.name for p in out.iterdir()) == sorted(name for name, _ in items)
    assert all((out / name).read_bytes() == data for name, data in items)


def test_a_failed_background_sync_fails_the_group_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, naming: str
) -> None:
    written: list[list[int]] = []

    def failing(fds: list[int], pool: Any) -> None:
        written.append(list(fds))
        raise OSError(errno.EIO, "writeback failed")

    monkeypatch.setattr(folder, "sync_new_files", failing)
    out = tmp_path / "out"
    destination = folder.FolderDestination(out)
    try:
        group = destination.begin_many([(f"b{i}.bundle", b"data") for i in range(10)])
        with pytest.raises(TransportError) as caught:
            group.finish()
    finally:
        destination.close()
    assert caught.value.message == f"cannot write to {out}: writeback failed"
    assert list(out.iterdir()) == []  # nothing named, no temp file left
    for fd in written[0]:
        with pytest.raises(OSError):
            os.fstat(fd)  # closed


@pytest.mark.parametrize("how", ["put", "put_many", "begin_many", "background_sync"])
def test_a_failed_write_to_a_folder_is_one_transport_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A full disk or an I/O error in the outbox is the destination's one-line
    ``transport_failed`` (``relay gateway run`` reports it and retries next period), not an
    internal error; nothing is left in the folder."""
    from relay.codes import TRANSPORT_FAILED

    def fails(code: int) -> Callable[..., Any]:
        def call(*_args: Any) -> Any:
            raise OSError(code, os.strerror(code))

        return call

    out = tmp_path / "out"
    items = [(f"b{i}.bundle", b"data") for i in range(10)]
    destination = folder.FolderDestination(out)
    if how == "put":  # written through a file object, then fsynced
        monkeypatch.setattr(os, "fsync", fails(errno.EIO))
    elif how == "background_sync":
        monkeypatch.setattr(folder, "sync_new_files", fails(errno.EIO))
    else:
        monkeypatch.setattr(os, "write", fails(errno.ENOSPC))
    try:
        with pytest.raises(TransportError) as caught:
            if how == "put":
                destination.put("b.bundle", b"data")
            elif how == "put_many":
                destination.put_many(items)
            else:
                destination.begin_many(items).finish()
    finally:
        monkeypatch.undo()
        destination.close()
    reason = "Input/output error" if how in ("put", "background_sync") else "No space left"
    assert caught.value.code == TRANSPORT_FAILED
    assert caught.value.message.startswith(f"cannot write to {out}: {reason}")
    assert "\n" not in caught.value.diagnostics() and caught.value.__cause__ is None
    assert list(out.iterdir()) == []


def test_a_file_system_without_unnamed_files_gets_temp_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open, renamed = os.open, []

    def no_tmpfile(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, "not here")
        return real_open(path, flags, *args, **kwargs)

    real_replace = os.replace

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        renamed.append(str(src))
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "open", no_tmpfile)
    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "out"
    write_many_atomic(out, [(f"b{i}.bundle", b"data") for i in range(10)])
    assert len(renamed) == 10 and all(r.startswith(".b") for r in renamed)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"b{i}.bundle" for i in range(10))


def test_a_system_that_refuses_links_through_proc_gets_temp_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``O_TMPFILE`` works but the link through ``/proc/self/fd`` is refused (a hardened
    ``/proc``, a security module): the group is written again under temp names, not failed
    for good in every pass."""
    links = []

    def refused(src: Any, dst: Any, **kwargs: Any) -> None:
        links.append(str(src))
        raise PermissionError(errno.EPERM, "not through /proc")

    monkeypatch.setattr(os, "link", refused)
    out = tmp_path / "out"
    items = [(f"b{i}.bundle", b"data %d" % i) for i in range(10)]
    write_many_atomic(out, items)
    assert len(links) == 1 and links[0].startswith("/proc/self/fd/")  # tried once, then named
    assert sorted(p.name for p in out.iterdir()) == sorted(name for name, _ in items)
    assert all((out / name).read_bytes() == data for name, data in items)


def test_an_unnamed_file_that_cannot_be_made_fails_the_group_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a file system without unnamed files falls back to temp names; any other failure
    (a full disk, too many open files) fails the write, every descriptor closed."""
    real_open, opened = os.open, []

    def third_fails(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_TMPFILE == os.O_TMPFILE and len(opened) == 2:
            raise OSError(errno.ENOSPC, "full")
        fd = real_open(path, flags, *args, **kwargs)
        opened.append(fd)
        return fd

    out = tmp_path / "out"
    out.mkdir(mode=0o700)
    monkeypatch.setattr(os, "open", third_fails)
    with pytest.raises(OSError) as caught:
        write_many_atomic(out, [(f"b{i}.bundle", b"data") for i in range(10)])
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC
    assert list(out.iterdir()) == []
    for fd in opened:
        with pytest.raises(OSError):
            os.fstat(fd)  # closed


@pytest.mark.slow
def test_a_writer_killed_before_the_links_leaves_no_file_behind(tmp_path: Path) -> None:
    """Killed after the sync and before the first name (``write.synced``): unnamed files die
    with the process, so there is no temp file for a later write to sweep."""
    script = (
        "import sys; from pathlib import Path\n"
        "from relay.transport.folder import write_many_atomic\n"
        "write_many_atomic(Path(sys.argv[1]), [(f'b{i}.bundle', b'x') for i in range(20)])\n"
    )
    out = tmp_path / "out"
    env = {**os.environ, "RELAY_CRASH_AT": "write.synced"}
    killed = subprocess.run([sys.executable, "-c", script, str(out)], env=env, check=False)
    assert killed.returncode == -9
    assert out.is_dir() and list(out.iterdir()) == []


@pytest.mark.slow
def test_reading_folders_does_not_load_ctypes() -> None:
    """The agent's service reads its inbox through the folder transport and never syncs a group
    of files: ctypes (about 4 ms and its memory) is loaded only by a group's sync."""
    script = "import sys, relay.transport.folder; print('ctypes' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True)
    assert found.stdout.strip() == b"False"
