"""Waiting on files without sleeping: a condition re-checked at each inotify event."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def wait_for(
    condition: Callable[[], Any],
    timeout: float = 30.0,
    what: str = "",
    *,
    watch: Path,
    recursive: bool = True,
) -> Any:
    """``condition()`` once it is truthy: checked now and again at each change of a file under
    ``watch`` (inotify, through watchdog; below it too unless ``recursive`` is false), so no
    sleep paces the wait. ``AssertionError`` naming ``what`` when ``timeout`` passes first."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    changed = threading.Event()

    class Changed(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type not in ("opened", "closed_no_write"):  # our own reads
                changed.set()

    observer = Observer()
    observer.schedule(Changed(), str(watch), recursive=recursive)
    observer.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            changed.clear()  # before the check: a change during it wakes the next wait
            value = condition()
            if value:
                return value
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {what or condition}"
            changed.wait(left)
    finally:
        observer.stop()
        observer.join(10)
