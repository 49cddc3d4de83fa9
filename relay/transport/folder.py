"""Folder transport: removable media, diode drop folders, local staging.

Writes are atomic (temp name with a leading dot, fsync, rename, fsync of the folder; a group of
files is written unnamed where the file system allows it, synced, then linked). Reads never
follow symlinks and never block on FIFOs: a path is opened with ``O_NOFOLLOW | O_NONBLOCK`` and
checked with ``fstat`` before a byte is read, and the size cap is decided from that ``fstat``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

from relay import crashpoint
from relay.codes import VANISHED
from relay.errors import NOT_REGULAR_FILE, TOO_LARGE, BundleRejected, TransportError
from relay.transport.base import BUNDLE_SUFFIX, Pending
from relay.transport.durable import sync_new_files, sync_pool

if TYPE_CHECKING:
    from collections.abc import Iterator
    from concurrent.futures import Executor, Future, ThreadPoolExecutor

# A writer killed between creating its temp file and the rename leaves it behind (hidden: every
# reader skips names starting with a dot); it is swept by a later write once this old.
STALE_TEMP_SECONDS = 3600
_TEMP_NAME = re.compile(r"\.[^/]+\.[0-9a-f]{12}\.tmp")
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_PROC_FD = "/proc/self/fd"
# open(O_TMPFILE) where the file system or kernel has no unnamed files
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT})


def _checked(name: str) -> str:
    """``name``, refused unless it names a visible file directly in the folder."""
    if "/" in name or name.startswith("."):
        raise ValueError(f"unsafe file name {name!r}")
    return name


def _temp_name(name: str, token: str | None = None) -> str:
    """The hidden temp name of ``name`` (:data:`_TEMP_NAME`, which the sweep looks for):
    ``token`` is 12 hex digits, random unless given."""
    return f".{name}.{token or secrets.token_hex(6)}.tmp"


def write_atomic(folder: Path, name: str, data: bytes | memoryview, mode: int = 0o600) -> Path:
    """Write ``data`` to ``folder/name`` so that readers see all of it or nothing."""
    final = folder / _checked(name)
    ensure_private_dir(folder)
    temp = folder / _temp_name(name)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        crashpoint.reached("write.synced")
        temp.replace(final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    _fsync_dir(folder)
    sweep_stale_temps(folder)
    return final


def write_many_atomic(
    folder: Path,
    items: list[tuple[str, bytes]],
    pool: Executor | None = None,
    sweep: bool = True,
) -> list[Path]:
    """:func:`write_atomic` for many files at once: every file is written unnamed (``O_TMPFILE``,
    where the file system has it; else under a temp name), then all are made durable together
    (one ``syncfs`` where :mod:`relay.transport.durable` allows it, else an ``fsync`` each by
    ``pool``'s threads, several at a time, so the file system commits them together), then each
    is linked (or renamed) to its name, then the folder is fsynced (and swept, if ``sweep``)
    once. A reader sees each file whole or not at all; after a crash each file named before the
    folder's fsync may or may not be there, as with one file, and an unnamed file is simply gone
    (nothing to sweep). ADR 0025."""
    return GroupWrite(folder, items, pool, sweep).finish()


class GroupWrite:
    """:func:`write_many_atomic` in two halves: made, the group's files are written (not yet
    named) and, given a ``syncer``, being made durable by its thread while the caller goes on
    (ADR 0026); :meth:`finish` waits for that, names them and syncs the folder. Nothing is named
    before :meth:`finish`; one that fails leaves nothing behind (temp files removed, unnamed
    files closed)."""

    def __init__(
        self,
        folder: Path,
        items: list[tuple[str, bytes]],
        pool: Executor | None = None,
        sweep: bool = True,
        syncer: Executor | None = None,
    ) -> None:
        for name, _ in items:
            _checked(name)
        ensure_private_dir(folder)
        self.folder, self.items, self.pool, self.sweep = folder, items, pool, sweep
        self.temps: list[str] = []  # temp names where the files could not be unnamed
        self.fds: list[int] = []
        self.synced: Future[None] | None = None
        self.folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            unnamed = _unnamed_files(self.folder_fd, len(items))
            if unnamed is None:
                self._write_temps()
            else:
                self.fds = unnamed
                for fd, (_, data) in zip(unnamed, items, strict=True):
                    _write_all(fd, data)
            if syncer is not None:
                self.synced = syncer.submit(sync_new_files, self.fds, pool)
        except BaseException:
            self._drop()
            raise

    def finish(self) -> list[Path]:
        """Wait until the files are durable, name them, fsync the folder; their paths."""
        try:
            if self.synced is None:
                sync_new_files(self.fds, self.pool)
            else:
                self.synced.result()
            if self.temps:
                self._rename_temps()
            elif not self._link_unnamed():
                self._close_files()  # refused through /proc: under temp names after all
                self._write_temps()
                sync_new_files(self.fds, self.pool)
                self._rename_temps()
            os.fsync(self.folder_fd)
        except BaseException:
            self._drop()
            raise
        self._close_files()
        os.close(self.folder_fd)
        if self.sweep:
            sweep_stale_temps(self.folder)
        return [self.folder / name for name, _ in self.items]

    def _write_temps(self) -> None:
        """Where unnamed files cannot be made: each file written under a temp name."""
        # One random token for the group, 12 hex digits of it per temp name; every call names
        # its files relative to the folder's descriptor (no path walked per call).
        token = secrets.token_hex(6 * len(self.items))
        for i, (name, data) in enumerate(self.items):
            self.temps.append(_temp_name(name, token[12 * i : 12 * i + 12]))
            self.fds.append(_write_unsynced(self.temps[-1], data, self.folder_fd))

    def _link_unnamed(self) -> bool:
        """Name each synced unnamed file; False when the first cannot be linked (a system that
        refuses links through ``/proc``): nothing is named then."""
        for index, (fd, (name, _)) in enumerate(zip(self.fds, self.items, strict=True)):
            crashpoint.reached("write.synced")
            try:
                _name_unnamed(fd, name, self.folder_fd)
            except OSError:
                if index == 0:
                    return False
                raise
        return True

    def _rename_temps(self) -> None:
        for temp, (name, _) in zip(self.temps, self.items, strict=True):
            crashpoint.reached("write.synced")
            os.replace(temp, name, src_dir_fd=self.folder_fd, dst_dir_fd=self.folder_fd)

    def _close_files(self) -> None:
        if self.synced is not None:
            with contextlib.suppress(Exception):  # its failure is reported by finish()
                self.synced.result()  # never close a descriptor the syncer may still use
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def _drop(self) -> None:
        """After a failure: every descriptor closed (unnamed files vanish), temp files removed."""
        with contextlib.suppress(OSError):
            self._close_files()
        for temp in self.temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=self.folder_fd)
        self.temps = []
        os.close(self.folder_fd)


def _unnamed_files(folder_fd: int, count: int) -> list[int] | None:
    """``count`` new unnamed files in the folder, or ``None`` where that cannot be done: no
    ``O_TMPFILE`` in the file system (NFS, FUSE, old kernels) or no ``/proc/self/fd`` to name
    them by (linking by descriptor alone needs a capability a service should not have)."""
    flags = getattr(os, "O_TMPFILE", 0)
    if not flags or not count or not Path(_PROC_FD).is_dir():
        return None
    fds: list[int] = []
    try:
        for _ in range(count):
            fds.append(os.open(".", flags | os.O_WRONLY | os.O_CLOEXEC, 0o600, dir_fd=folder_fd))
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        if exc.errno in _NO_TMPFILE and not fds:
            return None
        raise
    return fds


def _name_unnamed(fd: int, name: str, folder_fd: int) -> None:
    """Give the synced unnamed file ``fd`` its ``name``; a file already there is replaced in
    one step (linked under a temp name, then renamed over it), as a rename would."""
    source = f"{_PROC_FD}/{fd}"
    try:
        os.link(source, name, dst_dir_fd=folder_fd, follow_symlinks=True)
    except FileExistsError:
        temp = _temp_name(name)
        os.link(source, temp, dst_dir_fd=folder_fd, follow_symlinks=True)
        try:
            os.replace(temp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=folder_fd)
            raise


def _write_unsynced(temp: str, data: bytes, folder_fd: int) -> int:
    """Create ``temp`` (in the folder open as ``folder_fd``) with ``data``; returns its open
    descriptor (the caller syncs and closes)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    fd = os.open(temp, flags, 0o600, dir_fd=folder_fd)
    try:
        _write_all(fd, data)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def sweep_stale_temps(folder: Path, now: float | None = None) -> list[str]:
    """Remove the temp files a killed writer left in ``folder`` (a SIGKILL or power loss between
    creating the temp file and the rename), once they are older than :data:`STALE_TEMP_SECONDS`
    (so a concurrent writer's temp file is never touched). Returns the names removed."""
    now = time.time() if now is None else now
    removed: list[str] = []
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if _TEMP_NAME.fullmatch(e.name)]
    except OSError:
        return removed
    for name in names:
        with contextlib.suppress(OSError):
            info = os.lstat(folder / name)
            if stat.S_ISREG(info.st_mode) and now - info.st_mtime > STALE_TEMP_SECONDS:
                (folder / name).unlink()
                removed.append(name)
    return removed


def ensure_private_dir(folder: Path) -> None:
    """Create ``folder`` (and parents) with mode 0700 if it does not exist."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise TransportError(f"cannot create folder {folder}: {exc.strerror}") from None
    if not folder.is_dir():
        raise TransportError(f"{folder} is not a folder")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_head(path: Path, limit: int) -> bytes:
    """Up to ``limit`` bytes from the start of a regular file, with the guards of
    :func:`read_capped` (never follows a link, never blocks on a FIFO)."""
    fd = _open_regular(path)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _open_regular(path: Path) -> int:
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):
            raise BundleRejected(
                f"{path.name} is not a regular file", code=NOT_REGULAR_FILE
            ) from None
        if exc.errno == errno.ENOENT:
            raise TransportError(f"{path} is gone", code=VANISHED) from None
        raise TransportError(f"cannot open {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BundleRejected(f"{path.name} is not a regular file", code=NOT_REGULAR_FILE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_capped(path: Path, max_bytes: int) -> bytes:
    """Read a regular file of at most ``max_bytes`` without following links or blocking."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):
            raise BundleRejected(
                f"{path.name} is not a regular file", code=NOT_REGULAR_FILE
            ) from None
        if exc.errno == errno.ENOENT:
            raise TransportError(f"{path} is gone", code=VANISHED) from None
        raise TransportError(f"cannot open {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BundleRejected(f"{path.name} is not a regular file", code=NOT_REGULAR_FILE)
        if info.st_size > max_bytes:
            raise BundleRejected(
                f"{path.name} is {info.st_size} bytes, over the cap of {max_bytes}", code=TOO_LARGE
            )
        chunks: list[bytes] = []
        remaining = max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise BundleRejected(f"{path.name} grew over the cap of {max_bytes} bytes", code=TOO_LARGE)
    return data


class FolderDestination:
    """Write bundles into a local folder, created 0700 when missing."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._pool: ThreadPoolExecutor | None = None
        self._syncer: ThreadPoolExecutor | None = None

    def put(self, name: str, data: bytes) -> str:
        with _writing(self.folder):
            return str(write_atomic(self.folder, name, data))

    def put_many(self, items: list[tuple[str, bytes]]) -> list[str]:
        """:meth:`put` for many files, synced together (:func:`write_many_atomic`); stale temp
        files are swept on the first call only."""
        return [str(p) for p in self.begin_many(items, in_background=False).finish()]

    def begin_many(self, items: list[tuple[str, bytes]], in_background: bool = True) -> GroupWrite:
        """:meth:`put_many` in two halves (:class:`GroupWrite`): the files written and, with
        ``in_background``, made durable by this destination's one sync thread while the caller
        goes on; named by ``finish()``."""
        first = self._pool is None
        if self._pool is None:
            self._pool = sync_pool()
        if in_background and self._syncer is None:
            from concurrent.futures import ThreadPoolExecutor

            self._syncer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-sync")
        syncer = self._syncer if in_background else None
        with _writing(self.folder):
            return _DestinationGroup(self.folder, items, self._pool, sweep=first, syncer=syncer)

    def close(self) -> None:
        for pool in (self._syncer, self._pool):
            if pool is not None:
                pool.shutdown()
        self._pool = self._syncer = None


class _DestinationGroup(GroupWrite):
    """A group begun by :class:`FolderDestination`: a failure is a one-line TransportError."""

    def finish(self) -> list[Path]:
        with _writing(self.folder):
            return super().finish()


@contextlib.contextmanager
def _writing(folder: Path) -> Iterator[None]:
    """A failed write into ``folder`` (a full disk, an I/O error, a file too large) as a
    one-line :class:`TransportError` naming the folder and the system's reason: the caller
    reports it (``relay gateway run`` retries in the next period) instead of failing as a bug."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TransportError(f"cannot write to {folder}: {reason}") from None


class FolderSource:
    """Read bundles from a folder (every ``*.bundle``) or a single named file."""

    def __init__(self, location: Path) -> None:
        self.location = location

    def list_pending(self) -> list[Pending]:
        loc = self.location
        try:
            info = loc.lstat()
        except FileNotFoundError:
            raise TransportError(f"{loc} does not exist") from None
        if stat.S_ISDIR(info.st_mode):
            return [
                Pending(name=entry.name, ref=str(entry))
                for entry in sorted(loc.iterdir())
                if entry.name.endswith(BUNDLE_SUFFIX) and not entry.name.startswith(".")
            ]
        return [Pending(name=loc.name, ref=str(loc), size=info.st_size, explicit=True)]

    def fetch(self, item: Pending, max_bytes: int) -> bytes:
        return read_capped(Path(item.ref), max_bytes)

    def fetch_head(self, item: Pending, limit: int) -> bytes:
        """The first ``limit`` bytes (header and signature), for judging before reading all."""
        return read_head(Path(item.ref), limit)

    def remove(self, item: Pending) -> None:
        with contextlib.suppress(FileNotFoundError):
            Path(item.ref).unlink()

    def close(self) -> None:
        return None
