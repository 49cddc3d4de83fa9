"""Diode goodput on loopback: ``relay diode`` next to udpcast, at 0% and 5% random loss.

Both tools move the same 50 MB file inside a private network namespace whose loopback drops a
random share of UDP datagrams (an nftables ``numgen random`` rule: the kernel lacks ``netem`` on
some hosts, nftables works wherever namespaces do). Both are capped at the same wire rate and use
about the same FEC overhead (relay 0.15, udpcast 19 parity per 128 = 14.8%). Goodput is file
bytes divided by the time from starting the sender to the receiver holding a verified file
(relay's receiver also fsyncs it; udpcast's does not). Each cell runs relay and udpcast in turn
(A B A B ..., five pairs) and prints both medians and the ratio relay/udpcast (of the medians,
and the median of the pairwise ratios); once on the machine as it is, once with a busy-loop
process pinned to the last core ("busy"). Then, unless ``--goodput-only`` is given, the
smallest ``--fec-overhead`` that still delivers at 5% loss in one pass, the smallest udpcast
redundancy that does, and the in-process single-pass delivery table.

Needs root (namespaces); installs ``udpcast`` and ``nftables`` with apt-get when missing, and
says why not if it cannot. Run: ``python -m benchmarks diode`` (part of ``make bench``).
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

FILE_SIZE = 50_000_000
WIRE_RATE = 50_000_000  # bytes/s on the wire, for both tools
OVERHEAD = 0.15  # relay diode's parity ratio for the goodput rows
UDPCAST_FEC = "8x19/128"  # 19 parity per 128: 14.8%, the nearest udpcast has to 0.15
OVERHEADS_TO_TRY = (0.06, 0.08, 0.10, 0.12, 0.15, 0.20, 0.25)
UDPCAST_REDUNDANCY_TO_TRY = (8, 12, 16, 19, 24, 32)
NAMESPACE = f"relaybench{os.getpid()}"
PORT = 47800
TIMEOUT = 120.0
RUNS = 5  # per cell, relay and udpcast in turn; the median of those that delivered is shown


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=TIMEOUT)


def _ns(*argv: str) -> list[str]:
    return ["ip", "netns", "exec", NAMESPACE, *argv]


def _ensure_tools() -> None:
    missing = [
        p for p, tool in (("udpcast", "udp-sender"), ("nftables", "nft")) if not shutil.which(tool)
    ]
    if missing:
        _run("apt-get", "update", "-qq")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            check=True,
            capture_output=True,
            env=env,
            timeout=600,
        )


@contextlib.contextmanager
def _namespace() -> Iterator[None]:
    _run("ip", "netns", "add", NAMESPACE)
    try:
        _run(*_ns("ip", "link", "set", "lo", "up"))
        _run(*_ns("nft", "add", "table", "inet", "bench"))
        _run(
            *_ns(
                "nft",
                "add",
                "chain",
                "inet",
                "bench",
                "input",
                "{ type filter hook input priority 0; }",
            )
        )
        yield
    finally:
        _run("ip", "netns", "del", NAMESPACE, check=False)


def _set_loss(loss: float) -> None:
    _run(*_ns("nft", "flush", "chain", "inet", "bench", "input"))
    if loss > 0:
        per_mille = str(round(loss * 1000))
        _run(
            *_ns(
                "nft",
                "add",
                "rule",
                "inet",
                "bench",
                "input",
                "meta",
                "l4proto",
                "udp",
                "numgen",
                "random",
                "mod",
                "1000",
                "<",
                per_mille,
                "drop",
            )
        )


def _lines(stream: object, into: queue.Queue[tuple[float, str]]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put((time.monotonic(), line))


def run_relay(source: Path, inbox: Path, overhead: float) -> float | None:
    """Seconds to deliver ``source`` with ``relay diode``, or ``None`` if it did not arrive."""
    shutil.rmtree(inbox, ignore_errors=True)
    py = [sys.executable, "-m", "relay", "diode"]
    receiver = subprocess.Popen(
        _ns(*py, "receive", "--listen", f"127.0.0.1:{PORT}", "--out", str(inbox), "--expire", "2s"),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[tuple[float, str]] = queue.Queue()
    threading.Thread(target=_lines, args=(receiver.stderr, lines), daemon=True).start()
    try:
        lines.get(timeout=30)  # "listening on ..."
        start = time.monotonic()
        _run(
            *_ns(
                *py,
                "send",
                str(source),
                "--to",
                f"udp://127.0.0.1:{PORT}",
                "--fec-overhead",
                str(overhead),
                "--rate",
                str(WIRE_RATE),
            )
        )
        while True:
            stamp, line = lines.get(timeout=TIMEOUT)
            if "received" in line:
                ok = (inbox / source.name).read_bytes() == source.read_bytes()
                return stamp - start if ok else None
            if "expired" in line or "rejected" in line:
                return None
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)


def run_udpcast(source: Path, target: Path, fec: str) -> float | None:
    """Seconds for ``udp-sender --async --fec`` to deliver ``source`` intact, or ``None``."""
    target.unlink(missing_ok=True)
    receiver = subprocess.Popen(
        _ns(
            "udp-receiver",
            "--interface",
            "lo",
            "--nokbd",
            "--rcvbuf",
            str(32 << 20),
            "--file",
            str(target),
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # udp-receiver prints nothing reliable to wait on; it must be listening
    start = time.monotonic()
    bitrate = f"{WIRE_RATE * 8 // 1_000_000}m"
    sender = subprocess.run(
        _ns(
            "udp-sender",
            "--interface",
            "lo",
            "--async",
            "--fec",
            fec,
            "--max-bitrate",
            bitrate,
            "--autostart",
            "1",
            "--rexmit-hello-interval",
            "100",
            "--nokbd",
            "--file",
            str(source),
        ),
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    try:
        receiver.wait(timeout=30)
    except subprocess.TimeoutExpired:
        receiver.kill()
        receiver.wait()
        return None
    elapsed = time.monotonic() - start
    intact = target.exists() and target.read_bytes() == source.read_bytes()
    return elapsed if sender.returncode == 0 and intact else None


def tradeoff_table(size: int = 2_000_000, trials: int = 10) -> None:
    """Share of single-pass transfers that arrive, by random loss and ``--fec-overhead``.

    In process (real encoder, real :class:`Assembler`, datagrams dropped at random), so it
    measures the code's budget, not the network stack.
    """
    from relay.diode.assembly import Assembler
    from relay.diode.fec import choose_geometry, interleaved_packets
    from relay.diode.manifest import encode_object

    losses = (0.01, 0.02, 0.05, 0.10, 0.20)
    overheads = (0.05, 0.10, 0.15, 0.25, 0.50)
    obj = encode_object("x.bundle", random.Random(1).randbytes(size))
    rng = random.Random(2)
    print(f"\nsingle-pass delivery, {size // 1_000_000} MB file, {trials} trials per cell")
    print("loss  " + "".join(f"{'overhead ' + str(o):>15}" for o in overheads))
    for loss in losses:
        cells = []
        for overhead in overheads:
            packets = list(interleaved_packets(obj, choose_geometry(len(obj), overhead), b"T" * 8))
            wins = 0
            for _ in range(trials):
                assembler = Assembler()
                events = [assembler.accept(d, 0.0) for d in packets if rng.random() >= loss]
                wins += any(e is not None and e.kind == "completed" for e in events)
            cells.append(f"{wins}/{trials}")
        print(f"{loss:>4.0%}  " + "".join(f"{c:>15}" for c in cells))


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _goodput(runs: list[float | None]) -> str:
    """Median goodput of the runs that delivered, and how many did."""
    done = [r for r in runs if r is not None]
    if not done:
        return f"failed 0/{len(runs)}"
    median = _median(done)
    return f"{FILE_SIZE / median / 1e6:5.1f} MB/s ({median:.2f} s, {len(done)}/{len(runs)})"


def _ratio(ours: list[float | None], theirs: list[float | None]) -> str:
    """Goodput ratio relay / udpcast: of the medians, and the median of the run-by-run pairs."""
    a = [r for r in ours if r is not None]
    b = [r for r in theirs if r is not None]
    if not a or not b:
        return "n/a"
    pairs = [t / o for o, t in zip(ours, theirs, strict=True) if o is not None and t is not None]
    paired = f", pairs {_median(pairs):.2f}x" if pairs else ""
    return f"{_median(b) / _median(a):.2f}x{paired}"


@contextlib.contextmanager
def _other_core_busy() -> Iterator[str]:
    """A busy-loop process pinned to the last core while the block runs (none on one core)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        yield "only one core: no busy loop"
        return
    core = cores[-1]
    spinner = subprocess.Popen(
        ["taskset", "-c", str(core), sys.executable, "-c", "while True: pass"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"a busy loop pinned to core {core}"
    finally:
        spinner.kill()
        spinner.wait()


def goodput_rows(source: Path, work: Path) -> None:
    """Relay next to udpcast, run by run in turn (A B A B ...), quiet then with a core busy."""
    print(
        f"{'loss':>5}  {'load':<6} {'relay --fec-overhead ' + str(OVERHEAD):<30}"
        f"{'udpcast --fec ' + UDPCAST_FEC:<30}relay/udpcast"
    )
    for load in ("quiet", "busy"):
        with contextlib.ExitStack() as stack:
            if load == "busy":
                note = stack.enter_context(_other_core_busy())
                print(f"       busy = {note}")
            for loss in (0.0, 0.05):
                _set_loss(loss)
                ours: list[float | None] = []
                theirs: list[float | None] = []
                for _ in range(RUNS):
                    ours.append(run_relay(source, work / "inbox", OVERHEAD))
                    theirs.append(run_udpcast(source, work / "udpcast.out", UDPCAST_FEC))
                print(
                    f"{loss:>5.0%}  {load:<6} {_goodput(ours):<30}{_goodput(theirs):<30}"
                    f"{_ratio(ours, theirs)}",
                    flush=True,
                )


def main() -> None:
    """Print goodput for both tools at 0% and 5% loss, and the smallest FEC that delivers."""
    if os.geteuid() != 0:
        raise SystemExit("bench_diode needs root for a network namespace")
    try:
        _ensure_tools()
    except (OSError, subprocess.SubprocessError) as exc:
        raise SystemExit(
            f"bench_diode: cannot install udpcast/nftables with apt-get: {exc}"
        ) from None
    with tempfile.TemporaryDirectory() as tmp, _namespace():
        work = Path(tmp)
        source = work / "payload.bundle"
        source.write_bytes(random.Random(0).randbytes(FILE_SIZE))
        print(
            f"diode goodput on loopback, {FILE_SIZE // 1_000_000} MB file, wire cap "
            f"{WIRE_RATE // 1_000_000} MB/s, MB = 10^6 bytes, median of {RUNS} runs each, "
            f"relay and udpcast in turn; target relay/udpcast >= 1.5 quiet, >= 1.0 busy"
        )
        goodput_rows(source, work)
        if "--goodput-only" in sys.argv:
            return
        _set_loss(0.05)
        smallest = next(
            (o for o in OVERHEADS_TO_TRY if run_relay(source, work / "inbox", o) is not None), None
        )
        print(
            f"smallest relay --fec-overhead delivering at 5% loss (one pass, tried "
            f"{', '.join(map(str, OVERHEADS_TO_TRY))}): {smallest}"
        )
        found = next(
            (
                r
                for r in UDPCAST_REDUNDANCY_TO_TRY
                if run_udpcast(source, work / "udpcast.out", f"8x{r}/128") is not None
            ),
            None,
        )
        label = f"8x{found}/128 ({found / 128:.1%})" if found else "none"
        print(
            f"smallest udpcast --fec delivering at 5% loss (8xR/128, tried R in "
            f"{', '.join(map(str, UDPCAST_REDUNDANCY_TO_TRY))}): {label}"
        )
    tradeoff_table()


if __name__ == "__main__":
    main()
