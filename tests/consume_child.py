"""A small program the consumption tests run as CMD (modes by name; never a value in argv).

``echo VAR STATUS``        print sha256(VAR), whether any process's argv holds VAR's value,
                           then stdin to stdout and one line to stderr; exit STATUS.
``selfkill SIGNUM``        die by that signal.
``signals FILE``           write "ready", then append each USR1/USR2/HUP name; exit 3 on TERM.
``serve VAR FILE [ignore-term]``  append "PID DIGEST" to FILE, then sleep until stopped.
``hook FILE``              append a JSON line with RELAY_HOOK, RELAY_CHANGED, RELAY_PATHS and the
                           names of the RELAY_* variables to FILE.
``flood BYTES``            write that many bytes to stdout.
``hang PIDFILE``           write the pid, then sleep.
``legacy CONF PIDFILE LOG``  a legacy app: write the pid, append sha256(CONF) to LOG at start
                           and after each SIGHUP.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path


def argv_holds(value: bytes) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if value in (entry / "cmdline").read_bytes():
                    return True
            except OSError:
                continue
    return False


def mode_echo() -> None:
    var, status = sys.argv[2], int(sys.argv[3])
    value = os.environb.get(var.encode(), b"")
    out = sys.stdout.buffer
    out.write(hashlib.sha256(value).hexdigest().encode() + b"\n")
    out.write(b"argv-leak\n" if value and argv_holds(value) else b"argv-clean\n")
    out.write(sys.stdin.buffer.read())
    out.flush()
    sys.stderr.write("to-stderr\n")
    sys.exit(status)


def mode_selfkill() -> None:
    os.kill(os.getpid(), int(sys.argv[2]))
    time.sleep(5)


def mode_signals() -> None:
    target = Path(sys.argv[2])

    def note(signum: int, _frame: object) -> None:
        with target.open("a") as handle:
            handle.write(signal.Signals(signum).name + "\n")
        if signum == signal.SIGTERM:
            sys.exit(3)

    for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, note)
    with target.open("a") as handle:
        handle.write("ready\n")
    while True:
        signal.pause()  # the handlers do the work


def mode_serve() -> None:
    var, target = sys.argv[2], Path(sys.argv[3])
    if len(sys.argv) > 4 and sys.argv[4] == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    value = os.environb.get(var.encode(), b"")
    with target.open("a") as handle:
        handle.write(f"{os.getpid()} {hashlib.sha256(value).hexdigest()}\n")
    while True:
        signal.pause()  # until a signal ends it


def mode_hook() -> None:
    doc = {
        "hook": os.environ.get("RELAY_HOOK"),
        "changed": os.environ.get("RELAY_CHANGED"),
        "paths": os.environ.get("RELAY_PATHS"),
        "names": sorted(k for k in os.environ if k.startswith("RELAY_")),
    }
    with Path(sys.argv[2]).open("a") as handle:
        handle.write(json.dumps(doc) + "\n")


def mode_flood() -> None:
    left = int(sys.argv[2])
    block = b"x" * 65536
    while left > 0:
        sys.stdout.buffer.write(block[:left])
        left -= len(block)


def mode_legacy() -> None:
    conf, pidfile, log = (Path(a) for a in sys.argv[2:5])
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})  # taken by sigwait, not lost
    pidfile.write_text(f"{os.getpid()}\n")
    while True:  # load at start, then once per SIGHUP (several pending make one, as usual)
        digest = hashlib.sha256(conf.read_bytes()).hexdigest() if conf.exists() else "-"
        with log.open("a") as handle:
            handle.write(digest + "\n")
        signal.sigwait({signal.SIGHUP})


def mode_hang() -> None:
    Path(sys.argv[2]).write_text(str(os.getpid()))
    time.sleep(60)


MODES = {
    "echo": mode_echo,
    "selfkill": mode_selfkill,
    "signals": mode_signals,
    "serve": mode_serve,
    "hook": mode_hook,
    "flood": mode_flood,
    "legacy": mode_legacy,
    "hang": mode_hang,
}


if __name__ == "__main__":
    MODES[sys.argv[1]]()
