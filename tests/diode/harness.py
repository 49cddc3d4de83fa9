"""Real UDP plumbing for diode tests: a lossy relay thread and receiver/sender processes.

The relay sits between a ``relay diode send`` process and a ``relay diode receive`` process on
127.0.0.1 and damages the stream on purpose (loss, bursts, duplicates, reordering, bit flips),
driven by a seeded random generator so every run sees the same damage.
"""

from __future__ import annotations

import contextlib
import queue
import random
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

WAIT = 60.0  # upper bound for anything a test waits on; never reached on a healthy run


@dataclass
class Damage:
    """How the relay treats the stream; rates are probabilities per datagram."""

    loss: float = 0.0
    duplicate: float = 0.0
    flip: float = 0.0
    burst_every: int = 0  # drop ``burst_len`` datagrams at the start of every such period
    burst_len: int = 0
    reorder_window: int = 0  # hold up to this many datagrams and release them shuffled
    seed: int = 1


class LossyRelay(threading.Thread):
    """Forward datagrams from its own port to ``target``, damaging them per :class:`Damage`."""

    def __init__(self, target: tuple[str, int], damage: Damage) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.damage = damage
        self.rng = random.Random(damage.seed)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE (Linux, root)
        self.sock.bind(("127.0.0.1", 0))
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.seen = 0
        self.forwarded = 0
        self._held: list[bytes] = []
        self._halt = threading.Event()
        self._watchers: list[tuple[int, threading.Event]] = []

    @property
    def address(self) -> str:
        """``udp://`` URL senders should use."""
        host, port = self.sock.getsockname()
        return f"udp://{host}:{port}"

    def when_seen(self, count: int) -> threading.Event:
        """An event set once ``count`` datagrams have arrived at the relay."""
        event = threading.Event()
        self._watchers.append((count, event))
        return event

    def run(self) -> None:
        while not self._halt.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                self._flush()
                continue
            datagram = self.sock.recv(65535)
            self.seen += 1
            for count, event in self._watchers:
                if self.seen >= count:
                    event.set()
            for copy in self._damage(datagram):
                self._emit(copy)

    def _damage(self, datagram: bytes) -> list[bytes]:
        d, rng = self.damage, self.rng
        if d.burst_every and (self.seen % d.burst_every) < d.burst_len:
            return []
        if rng.random() < d.loss:
            return []
        if rng.random() < d.flip:
            spot = rng.randrange(len(datagram))
            datagram = datagram[:spot] + bytes([datagram[spot] ^ 0x40]) + datagram[spot + 1 :]
        return [datagram, datagram] if rng.random() < d.duplicate else [datagram]

    def _emit(self, datagram: bytes) -> None:
        if self.damage.reorder_window <= 0:
            self._send(datagram)
            return
        self._held.append(datagram)
        if len(self._held) >= self.damage.reorder_window:
            self._send(self._held.pop(self.rng.randrange(len(self._held))))

    def _flush(self) -> None:
        self.rng.shuffle(self._held)
        while self._held:
            self._send(self._held.pop())

    def _send(self, datagram: bytes) -> None:
        with contextlib.suppress(OSError):
            self.out.sendto(datagram, self.target)
        self.forwarded += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
        self.sock.close()
        self.out.close()


class Receiver:
    """A ``relay diode receive`` process on 127.0.0.1 with a free port, its log read live."""

    def __init__(self, out_dir: Path, *extra: str, prefix: tuple[str, ...] = ()) -> None:
        self.out_dir = out_dir
        self.proc = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "relay",
                "diode",
                "receive",
                "--listen",
                "127.0.0.1:0",
                "--out",
                str(out_dir),
                *extra,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        match = self.wait_for(r"listening on 127\.0\.0\.1:(\d+)")
        self.port = int(match.group(1))

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))

    def wait_for(
        self, pattern: str, timeout: float = WAIT, fail_on: str | None = "expired|rejected"
    ) -> re.Match[str]:
        """Block until a log line matches ``pattern``; fail on ``fail_on`` or after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no log line matching {pattern!r}; log: {self.log}")
            try:
                line = self.lines.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise AssertionError(f"receiver exited early; log: {self.log}") from None
                continue
            self.log.append(line)
            found = re.search(pattern, line)
            if found:
                return found
            if fail_on and re.search(fail_on, line):
                raise AssertionError(f"receiver gave up: {self.log}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send ``sig``, then the exit status (the receiver must stop cleanly and quickly)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=10)
        while not self.lines.empty():
            self.log.append(self.lines.get())
        return code


def send(files: list[Path], to: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``relay diode send`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "relay", "diode", "send", *map(str, files), "--to", to, *extra],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


def visible_files(folder: Path) -> list[str]:
    """Names in ``folder`` (all of them, dot files included)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def make_file(path: Path, size: int, seed: int = 0) -> bytes:
    """Write ``size`` random bytes to ``path`` and return them."""
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data
