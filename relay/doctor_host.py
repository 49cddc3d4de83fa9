"""``relay doctor``'s checks around the store: folders, audit sinks, disk space, quarantine
(see :mod:`relay.doctor`)."""

from __future__ import annotations

import os
import shutil
import socket
from contextlib import suppress
from pathlib import Path

from relay.doctor import FAIL, OK, WARN, Examination

DISK_WARN_BYTES = 1 << 30
DISK_FAIL_BYTES = 100 << 20


def _check_folders(ex: Examination) -> None:
    assert ex.home is not None  # noqa: S101
    config = ex.home.config
    folders: list[tuple[str, str]] = []
    if ex.side == "agent":
        folders = [("inbox", str(p)) for p in config.get("agent.inbox")]
    elif ex.side == "gateway":
        folders = [("export.to", str(config.get("export.to")))]
        folders += [("import.from", p) for p in str(config.get("import.from")).split(",")]
    checked = 0
    for label, location in folders:
        where = location.strip()
        if not where or "://" in where:
            continue
        checked += 1
        path = Path(where)
        if not path.is_dir():
            ex.add("folders", FAIL, f"{label} {path} is missing", f"mkdir -m 700 {path}")
        elif not os.access(path, os.W_OK | os.X_OK):
            ex.add(
                "folders",
                FAIL,
                f"{label} {path} is not writable",
                "give the service user write access (ReadWritePaths= under systemd)",
            )
        else:
            ex.add("folders", OK, f"{label} {path} present and writable")
    if not checked:
        ex.add("folders", OK, "no local folders configured")


def _check_sinks(ex: Examination) -> None:
    assert ex.home is not None  # noqa: S101
    jsonl = str(ex.home.config.get("audit.jsonl"))
    syslog = str(ex.home.config.get("audit.syslog"))
    if not jsonl and not syslog:
        ex.add("sinks", OK, "no audit sinks configured")
    if jsonl:
        parent = Path(jsonl).parent
        if os.access(parent, os.W_OK | os.X_OK):
            ex.add("sinks", OK, f"jsonl {jsonl} writable")
        else:
            ex.add("sinks", FAIL, f"jsonl {jsonl}: {parent} not writable", f"check {parent}")
    if syslog:
        _check_syslog(ex, syslog)


def _check_syslog(ex: Examination, url: str) -> None:
    from relay.audit.sinks import parse_syslog_url

    address = parse_syslog_url(url)
    if address.scheme == "udp":
        ex.add("sinks", OK, f"syslog {url} (udp: delivery cannot be checked)")
        return
    try:
        if address.scheme == "unix":
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(address.path)
        else:
            socket.create_connection((address.host, address.port), timeout=3).close()
    except OSError as exc:
        ex.add(
            "sinks",
            FAIL,
            f"syslog {url} unreachable ({exc.strerror or exc})",
            "start the collector or fix audit.syslog",
        )
        return
    ex.add("sinks", OK, f"syslog {url} reachable")


def _check_disk(ex: Examination) -> None:
    free = shutil.disk_usage(ex.path).free
    if free < DISK_FAIL_BYTES:
        ex.add("disk", FAIL, f"{_size(free)} free", "free space on the home's filesystem")
    elif free < DISK_WARN_BYTES:
        ex.add("disk", WARN, f"{_size(free)} free", "free space on the home's filesystem")
    else:
        ex.add("disk", OK, f"{_size(free)} free")


def _check_quarantine(ex: Examination) -> None:
    assert ex.home is not None  # noqa: S101
    folder = ex.home.quarantine_path
    files = [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    used = 0
    for path in files:
        with suppress(OSError):
            used += path.stat().st_size
    cap = int(ex.home.config.get("import.quarantine_bytes"))
    status = WARN if files else OK
    ex.add(
        "quarantine",
        status,
        f"{len(files)} file(s), {_size(used)} of {_size(cap)}",
        f"examine and remove the files in {folder}" if files else "",
    )


def _size(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


HOST_CHECKS = (_check_folders, _check_sinks, _check_disk, _check_quarantine)
