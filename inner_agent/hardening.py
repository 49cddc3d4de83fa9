"""Process hardening for the agent service: no core dumps, not dumpable, not ptrace-attachable
by other processes of the same user. See docs/memory-protection.md for what this does not give."""

from __future__ import annotations

import ctypes
import logging
import resource

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3

_log = logging.getLogger("relay.hardening")


def harden_process() -> bool:
    """Disable core dumps and mark the process non-dumpable; True if both took effect."""
    ok = True
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):
        _log.warning("could not disable core dumps")
        ok = False
    if not mark_undumpable():
        _log.warning("could not mark the process non-dumpable")
        ok = False
    return ok


def mark_undumpable() -> bool:
    """Only the ``PR_SET_DUMPABLE`` half (a child of a hardened process inherits its core limit,
    and a service's system call filter may refuse ``setrlimit``); True if it took effect."""
    return _prctl(PR_SET_DUMPABLE, 0) == 0


def is_dumpable() -> bool:
    """Whether the kernel would dump or let same-user processes attach to this process."""
    return _prctl(PR_GET_DUMPABLE, 0) == 1


def _prctl(option: int, arg: int) -> int:
    # The process's own symbols (libc is linked in): ctypes.util.find_library would run
    # `ldconfig -p` in a child process on every call.
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return -1
    return int(prctl(option, arg, 0, 0, 0))
