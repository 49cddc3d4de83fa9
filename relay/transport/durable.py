"""Making a batch of new files durable: one ``syncfs`` where it is known to be safe, else an
``fsync`` per file.

``fsync`` of a new file writes its data and commits the file system's journal for its inode:
per file, a journal transaction's bookkeeping, a wake-up of the journal thread and a thread of
ours to wait in it. ``syncfs(2)`` writes back every dirty inode of the file system and commits
the journal once, so a batch of a few hundred files costs about half the CPU (system-wide,
kernel threads included; ``docs/performance.md``). It is used only where it gives what the
``fsync`` calls give:

- Linux 5.8 or newer: before that, ``syncfs`` did not report a failed writeback, so a lost
  write would go unnoticed;
- a local file system whose ``sync_fs`` flushes data and metadata and waits (ext4, XFS, btrfs;
  tmpfs has nothing to flush): on a network or FUSE file system the per-file ``fsync`` is what
  its server or daemon is told, so those keep it;
- a batch of at least :data:`SYNCFS_MIN_FILES` files: below that the per-file calls are cheap,
  and a ``syncfs`` also waits for other writers' dirty data on the same file system.

Errors are reported as the ``fsync`` calls would be: an :class:`OSError` from the call. The
decision is made per file system (``st_dev``) once per process.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import Executor, ThreadPoolExecutor

SYNCFS_MIN_FILES = 8
_SYNC_WORKERS = 32  # files fsynced at once where a syncfs is not used

# statfs(2) f_type of the file systems whose sync_fs writes back and commits everything.
EXT4, XFS, BTRFS, TMPFS = 0xEF53, 0x58465342, 0x9123683E, 0x01021994
SYNCFS_FILE_SYSTEMS = frozenset({EXT4, XFS, BTRFS, TMPFS})

_decided: dict[int, bool] = {}


def sync_new_files(fds: Sequence[int], pool: Executor | None) -> None:
    """Make the files open as ``fds`` (all on one file system) durable: one ``syncfs`` when
    :func:`syncfs_suits` says so, else an ``fsync`` each, several at a time (the file system
    commits them together) by ``pool``'s threads or, without one, by threads made for the call."""
    if not fds:
        return
    if len(fds) >= SYNCFS_MIN_FILES and syncfs_suits(fds[0]):
        _syncfs(fds[0])
    elif pool is not None:
        list(pool.map(os.fsync, fds))
    else:
        with sync_pool() as own:
            list(own.map(os.fsync, fds))


def sync_pool() -> ThreadPoolExecutor:
    """Threads for :func:`sync_new_files` (each mostly waits in ``fsync``)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=_SYNC_WORKERS, thread_name_prefix="relay-fsync")


def syncfs_suits(fd: int) -> bool:
    """Whether one ``syncfs`` on the file system of ``fd`` makes its new files durable and
    reports a failed writeback (see the module's docstring)."""
    device = os.fstat(fd).st_dev
    known = _decided.get(device)
    if known is None:
        known = _kernel_reports_errors(os.uname().release) and fs_type(fd) in SYNCFS_FILE_SYSTEMS
        _decided[device] = known
    return known


def _kernel_reports_errors(release: str) -> bool:
    """Linux 5.8 or newer (``syncfs`` returns writeback errors since 5.8)."""
    if not sys.platform.startswith("linux"):
        return False
    version = re.match(r"(\d+)\.(\d+)", release)  # "5.10.0-28-amd64", "5.7-rc1"
    return version is not None and (int(version[1]), int(version[2])) >= (5, 8)


def fs_type(fd: int) -> int | None:
    """``f_type`` of ``fstatfs(fd)`` (the first word of ``struct statfs`` on Linux), or ``None``
    when the C library has no ``fstatfs``."""
    import ctypes  # here: the agent's service reads folders and never syncs a group of files

    call = _libc_function("fstatfs")
    if call is None:
        return None
    buffer = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if call(fd, buffer) != 0:
        return None
    return ctypes.c_long.from_buffer(buffer).value & 0xFFFFFFFF


def _syncfs(fd: int) -> None:
    import ctypes

    call = _libc_function("syncfs")
    if call is None:  # syncfs_suits said yes only where it exists
        raise OSError("syncfs is not available")
    if call(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _libc_function(name: str) -> Callable[..., int] | None:
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return getattr(libc, name)  # type: ignore[no-any-return]
    except (AttributeError, OSError):
        return None
