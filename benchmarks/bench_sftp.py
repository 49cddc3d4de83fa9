"""Throughput of the SFTP transport next to OpenSSH's own ``sftp`` client, same server, same run.

Run: ``python benchmarks/bench_sftp.py``. It starts the test suite's real sshd on 127.0.0.1
(tests/sshd_fixture.py), then moves 100 bundles of 1 MB and one bundle of 50 MB up and down:

- relay: ``SftpDestination.put`` (temp name, fsync, posix-rename, one connection per batch) and
  ``SftpSource.fetch`` (lstat, capped prefetched read);
- OpenSSH: ``sftp -b BATCH`` with ``put``/``get`` lines (plain writes, no rename, no fsync).

Each figure includes connecting and logging in once per batch. The four clients run in turn, five
rounds per case; the table shows medians and relay's ratio to OpenSSH (of the medians, and the
median of the round-by-round ratios). Loopback numbers measure CPU cost and round trips
(paramiko's pure-Python packet handling, fsync), not a network. Part of ``make bench``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

MB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent


def _timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _openssh_batch(server: object, lines: list[str], work: Path) -> None:
    from tests.sshd_fixture import SshServer

    assert isinstance(server, SshServer)
    batch = work / "batch.txt"
    batch.write_text("\n".join(lines) + "\n", encoding="utf-8")
    subprocess.run(
        [
            "sftp",
            "-q",
            "-b",
            str(batch),
            "-P",
            str(server.port),
            "-i",
            str(server.identity_file),
            "-o",
            f"UserKnownHostsFile={server.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            f"{server.user}@{server.host}",
        ],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )


def _clear(folder: Path) -> None:
    for entry in folder.iterdir():
        entry.unlink()


RUNS = 5  # rounds per case; each round runs every client once, in turn


def run(work: Path) -> list[tuple[str, str, int, list[float]]]:
    """Every measurement as ``(case, client, bytes, seconds of each round)``."""
    from relay.transport.sftp import SftpDestination, SftpSource
    from tests.sshd_fixture import running_sshd

    cases = {
        "100 x 1 MB": [(f"small-{i:03}.bundle", os.urandom(MB)) for i in range(100)],
        "1 x 50 MB": [("large.bundle", os.urandom(50 * MB))],
    }
    local = work / "local"
    local.mkdir()
    fetched = work / "fetched"
    fetched.mkdir()
    results: list[tuple[str, str, int, list[float]]] = []
    with running_sshd(work / "sshd") as server:
        remote = server.data_dir
        url, options = server.url(remote), server.options()
        for case, files in cases.items():
            total = sum(len(data) for _, data in files)
            for name, data in files:
                (local / name).write_bytes(data)

            def push(files: list[tuple[str, bytes]] = files) -> None:
                dest = SftpDestination(url, options)
                for name, data in files:
                    dest.put(name, data)
                dest.close()

            def pull() -> None:
                source = SftpSource(url, options)
                for item in source.list_pending():
                    source.fetch(item, 64 * MB)
                source.close()

            puts = [f'put "{local / n}" "{remote / n}"' for n, _ in files]
            gets = [f'get "{remote / n}" "{fetched / n}"' for n, _ in files]
            times: dict[str, list[float]] = {c: [] for c in CLIENTS}
            for _ in range(RUNS):
                _clear(remote)
                times["relay put"].append(_timed(push))
                times["relay fetch"].append(_timed(pull))
                _clear(remote)
                for client, lines in (("openssh put", puts), ("openssh get", gets)):
                    start = time.perf_counter()
                    _openssh_batch(server, lines, work)
                    times[client].append(time.perf_counter() - start)
                _clear(fetched)
            _clear(remote)
            _clear(local)
            results += [(case, client, total, times[client]) for client in CLIENTS]
    return results


CLIENTS = ("relay put", "openssh put", "relay fetch", "openssh get")
REFERENCE = {"relay put": "openssh put", "relay fetch": "openssh get"}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main() -> None:
    """Print throughput (MB/s, medians of RUNS rounds) and relay's ratio to OpenSSH."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="bench-sftp-") as tmp:
        results = run(Path(tmp))
    print(
        f"SFTP on loopback, real sshd, median of {RUNS} rounds (clients in turn), MB = 2^20 "
        "bytes; target relay/OpenSSH >= 0.8"
    )
    print(f"{'case':<12} {'client':<12} {'MB':>5} {'seconds':>8} {'MB/s':>7}  relay/OpenSSH")
    seconds = {(case, client): _median(runs) for case, client, _, runs in results}
    pairs = {(case, client): runs for case, client, _, runs in results}
    for case, client, size, _ in results:
        median = seconds[case, client]
        ratio = ""
        if client in REFERENCE:
            ours, theirs = pairs[case, client], pairs[case, REFERENCE[client]]
            paired = _median([t / o for o, t in zip(ours, theirs, strict=True)])
            ratio = f"{seconds[case, REFERENCE[client]] / median:.2f}x (pairs {paired:.2f}x)"
        print(
            f"{case:<12} {client:<12} {size / MB:>5.0f} {median:>8.2f} {size / MB / median:>7.1f}"
            f"  {ratio}"
        )


if __name__ == "__main__":
    main()
