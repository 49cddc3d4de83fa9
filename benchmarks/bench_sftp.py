"""Throughput of the SFTP transport next to OpenSSH's own ``sftp`` client, same server, same run.

Run: ``python benchmarks/bench_sftp.py``. It starts the test suite's real sshd on 127.0.0.1
(tests/sshd_fixture.py), then moves 100 bundles of 1 MB and one bundle of 50 MB up and down:

- relay: ``SftpDestination.put`` (temp name, fsync, posix-rename, one connection per batch) and
  ``SftpSource.fetch`` (lstat, capped prefetched read);
- OpenSSH: ``sftp -b BATCH`` with ``put``/``get`` lines (plain writes, no rename, no fsync).

Each figure includes connecting and logging in once per batch. Loopback numbers measure CPU cost
(ciphers, paramiko's pure-Python packet handling), not a network.
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


def run(work: Path) -> list[tuple[str, str, int, float]]:
    """Every measurement as ``(case, client, bytes, seconds)``."""
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
    results: list[tuple[str, str, int, float]] = []
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

            _clear(remote)
            results.append((case, "relay put", total, _timed(push)))
            results.append((case, "relay fetch", total, _timed(pull)))
            _clear(remote)
            puts = [f'put "{local / n}" "{remote / n}"' for n, _ in files]
            gets = [f'get "{remote / n}" "{fetched / n}"' for n, _ in files]
            for client, lines in (("openssh put", puts), ("openssh get", gets)):
                start = time.perf_counter()
                _openssh_batch(server, lines, work)
                results.append((case, client, total, time.perf_counter() - start))
            _clear(remote)
            _clear(local)
            _clear(fetched)
    return results


def main() -> None:
    """Print a table of throughput figures (MB/s)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="bench-sftp-") as tmp:
        results = run(Path(tmp))
    print(f"{'case':<12} {'client':<12} {'MB':>6} {'seconds':>8} {'MB/s':>8}")
    for case, client, size, seconds in results:
        print(
            f"{case:<12} {client:<12} {size / MB:>6.0f} {seconds:>8.2f} {size / MB / seconds:>8.1f}"
        )


if __name__ == "__main__":
    main()
