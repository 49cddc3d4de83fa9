"""Benchmark of the agent's local API: ``GET /v1/secrets/{path}`` next to a constant endpoint
of the same server stack, measured in one run from separate client processes (keep-alive).

Run: ``python -m benchmarks.bench_api [--seconds S] [--clients N …]`` (or ``python -m benchmarks
api`` with the defaults). Prints a table; no
assertions. The constant endpoint (``/v1/_bench/constant``) exists only when the agent runs with
``RELAY_API_BENCH=1``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLIENT = r"""
import json, sys, time
import httpx
url, path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
token = sys.stdin.readline().strip()  # never in argv, where /proc shows it
headers = {"Authorization": f"Bearer {token}"}
latencies = []
with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
    for _ in range(200):
        client.get(path)
    errors = 0
    end = time.perf_counter() + seconds
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        r = client.get(path)
        latencies.append(time.perf_counter() - t0)
        errors += r.status_code != 200
    elapsed = time.perf_counter() - started
print(json.dumps({"n": len(latencies), "elapsed": elapsed, "errors": errors,
                  "latencies": latencies}))
"""


def _relay(*args: str) -> str:
    """Run one relay command in-process and return its stdout."""
    from relay.cli import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            cli.main(args=list(args), prog_name="relay")
        except SystemExit as exc:
            if exc.code:
                raise RuntimeError(f"relay {' '.join(args)} exited {exc.code}") from None
    return out.getvalue()


def _setup(root: Path) -> tuple[Path, dict[str, str]]:
    gw, ag, usb = root / "gw", root / "ag", root / "usb"
    _relay("gateway", "init", "--home", str(gw), "--name", "hq")
    _relay("gateway", "identity", "--home", str(gw), "--out", str(root / "gw.id"))
    _relay(
        "agent",
        "init",
        "--home",
        str(ag),
        "--name",
        "plant7",
        "--request-out",
        str(root / "ag.req"),
    )
    _relay("gateway", "enroll", "--home", str(gw), str(root / "ag.req"))
    _relay("agent", "trust", "--home", str(ag), str(root / "gw.id"))
    value = root / "value"
    value.write_text("bench-value-0123456789abcdef\n")
    _relay(
        "gateway",
        "secret",
        "put",
        "--home",
        str(gw),
        "db/bench/password",
        "--value-file",
        str(value),
    )
    _relay("gateway", "grant", "--home", str(gw), "plant7", "db/**")
    _relay("gateway", "export", "--home", str(gw), "--to", str(usb))
    _relay("agent", "import", "--home", str(ag), str(usb))
    _relay("agent", "config", "set", "--home", str(ag), "api.listen", "127.0.0.1:0")
    out = _relay("agent", "app", "add", "--home", str(ag), "bench", "--allow", "db/**", "--json")
    doc = json.loads(out)
    return ag, {"client_id": doc["client_id"], "client_secret": doc["client_secret"]}


def _start(ag: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "RELAY_API_BENCH": "1"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relay", "agent", "run", "--home", str(ag)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"api listening on (http://[0-9.]+:\d+)", log_path.read_text())
        if found:
            return proc, found.group(1)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the agent did not start: {log_path.read_text()}")


def _token(url: str, creds: dict[str, str]) -> str:
    import httpx

    response = httpx.post(
        f"{url}/v1/oauth2/token", data={"grant_type": "client_credentials", **creds}
    )
    return str(response.json()["access_token"])


def _measure(url: str, token: str, path: str, seconds: float, clients: int) -> dict[str, float]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT, url, path, str(seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(clients)
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(token.encode() + b"\n")
        proc.stdin.flush()  # communicate() closes it
    results = [json.loads(p.communicate(timeout=seconds + 60)[0]) for p in procs]
    latencies = sorted(x for r in results for x in r["latencies"])
    total = sum(r["n"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    return {
        "rps": total / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "n": total,
        "errors": sum(r["errors"] for r in results),
    }


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table (``argv``: options; none from the bench runner)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args(argv or [])
    root = Path(tempfile.mkdtemp(prefix="relay-bench-api-"))
    os.umask(0o077)
    ag, creds = _setup(root)
    proc, url = _start(ag, root / "agent.log")
    try:
        token = _token(url, creds)
        rows = []
        for clients in args.clients:
            for name, path in (
                ("constant (same stack)", "/v1/_bench/constant"),
                ("GET /v1/secrets/{path}", "/v1/secrets/db/bench/password"),
            ):
                rows.append((name, clients, _measure(url, token, path, args.seconds, clients)))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"agent API on {url}, keep-alive, {args.seconds:.0f}s per row, "
        f"{os.cpu_count()} CPUs shared by server and clients"
    )
    print(
        f"{'endpoint':<26}{'clients':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'requests':>10}{'errors':>8}"
    )
    for name, clients, m in rows:
        print(
            f"{name:<26}{clients:>8}{m['rps']:>10.0f}{m['p50_ms']:>9.2f}{m['p99_ms']:>9.2f}"
            f"{m['n']:>10.0f}{m['errors']:>8.0f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
