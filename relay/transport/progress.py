"""Progress of large transfers: a rich bar on a terminal, nothing otherwise.

A transport asks :func:`terminal_progress` for a reporter with a label and a total size, calls
``advance(n)`` as bytes move and ``close()`` at the end. The bar is drawn on stderr only when both
stdout and stderr are terminals and the transfer is large; scripts, pipes, cron and ``--json``
output stay quiet. ``rich`` is imported only when a bar is drawn.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Protocol, TextIO

PROGRESS_THRESHOLD = 8 * 1024 * 1024


class Progress(Protocol):
    """Receives the bytes moved so far."""

    def advance(self, done: int) -> None: ...

    def close(self) -> None: ...


ProgressFactory = Callable[[str, int], Progress]


class NoProgress:
    """The quiet reporter."""

    def advance(self, done: int) -> None:
        return None

    def close(self) -> None:
        return None


class RichProgress:
    """A transfer bar with speed and time left, drawn on ``stream``."""

    def __init__(self, label: str, total: int, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as Bar

        self._bar: Any = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(file=stream),
            transient=True,
        )
        self._task = self._bar.add_task(label, total=total)
        self._bar.start()

    def advance(self, done: int) -> None:
        self._bar.advance(self._task, done)

    def close(self) -> None:
        self._bar.stop()


def terminal_progress(label: str, total: int) -> Progress:
    """A bar for transfers of at least 8 MiB when stdout and stderr are terminals."""
    if total < PROGRESS_THRESHOLD or not (_is_tty(sys.stdout) and _is_tty(sys.stderr)):
        return NoProgress()
    return RichProgress(label, total, sys.stderr)


def _is_tty(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False
