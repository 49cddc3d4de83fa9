"""A fleet: one ``relay gateway run`` pass for 10,000 agents of 100 secrets each (issue #14).

Rows of the table (figures only; nothing here asserts a time):

- SQLCipher, one ``relay gateway run --once`` process: the pass's wall time against the
  target of 30 s on 2 cores;
- PostgreSQL, two ``relay gateway run`` processes sharing the database against one process on
  the same database, run in turn (A B A B ...): the throughput ratio (target >= 1.6x), and a
  check that every agent got exactly one bundle in each run (none twice, none skipped). Measured
  twice: as running daemons (a period's pass, from the period's start to the last process's
  ``RELAY_PERIOD=`` notification: what a service does every period) and as ``--once`` processes
  (each pass also pays Python's start-up, the imports and the engine: about 1.2 s of CPU per
  process on this machine).

The fleet is built with bulk inserts (not 10,000 enrolments): agents ``a00000``…, each granted
``common/**`` (40 secrets shared by all), ``region/rNN/**`` (30, shared by 100 agents),
``site/gNNNN/*`` and ``site/gNNNN/db-*`` (20, shared by 10; the second pattern overlaps the
first) and ``agent/aNNNNN/**`` (10 of its own): 100 secrets each from five overlapping grants,
123,040 secrets in the store.

``python -m benchmarks.bench_fleet`` runs it all. ``RELAY_BENCH_FLEET_AGENTS`` (default 10000)
and ``RELAY_BENCH_FLEET_RUNS`` (default 3) scale it down for a quick look. The pieces can be
run alone, for ``farm-bench`` or a profiler:
``python -m benchmarks.bench_fleet build HOME [STORE_URL]`` and
``python -m benchmarks.bench_fleet pass HOME WORKERS`` (reset the schedule, then WORKERS
``relay gateway run --once`` processes at once; exit status 1 unless every agent got one bundle)
and ``python -m benchmarks.bench_fleet daemon-pass HOME WORKERS`` (the same with WORKERS daemons
started before the period).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.bench_bundle import relay_argv
from tests.children import child_env
from tests.fleet_kit import build_fleet

AGENTS_ENV = "RELAY_BENCH_FLEET_AGENTS"
RUNS_ENV = "RELAY_BENCH_FLEET_RUNS"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def busy_cores() -> tuple[float, float]:
    """(busy, total) processor seconds of the whole machine so far (``/proc/stat``): the
    busy share of a pass's window says whether it was bound by the processors."""
    ticks = os.sysconf("SC_CLK_TCK")
    with Path("/proc/stat").open(encoding="ascii") as stat:
        fields = [int(f) for f in stat.readline().split()[1:9]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


def reset_schedule(home_path: Path, due_at: int | None = None, every: int | None = None) -> Path:
    """Every agent due again (now, or from ``due_at``), ``export.every`` set to ``every``
    seconds if given, and a new, empty destination folder (returned): the state before a pass.
    The folders of earlier passes are kept until the benchmark ends: deleting 10,000 files just
    before creating 10,000 more makes ext4 search for inodes that were not freed recently,
    which would be measured as the pass's system time."""
    from outer_gateway.store import GatewayStore
    from relay.db import sa_executor, write_transaction
    from relay.home import Home

    home = Home.open(home_path, "gateway")
    runs = len(list(home_path.glob("out-*")))
    out = home_path / f"out-{runs + 1}"
    home.config.set("export.to", str(out))
    if every is not None:
        home.config.set("export.every", f"{every}s")
    home.config.save()
    store = GatewayStore.open(home)
    try:
        with write_transaction(store.engine) as conn:
            sa_executor(conn)("UPDATE agents SET next_export_at = ?", (due_at,))
        if store.engine.dialect.name == "postgresql":
            # What autovacuum does between periods (this machine's server runs without it):
            # without it every pass leaves 10,000 dead versions of the agents' rows (and this
            # reset 10,000 more), each later pass scans them, and two processes scan them
            # under each other's row locks (one against two fell to 1.16x after 15 passes).
            with store.engine.connect() as conn:
                auto = conn.execution_options(isolation_level="AUTOCOMMIT")
                auto.exec_driver_sql("VACUUM ANALYZE")
    finally:
        store.close()
    return out


def one_pass(home_path: Path, workers: int) -> tuple[float, Counter[str]]:
    """Seconds for ``workers`` ``relay gateway run --once`` processes started together to
    finish, and how many bundles each agent got (from the files written). Prints the workers'
    CPU seconds (user + system): on a shared machine the wall time also counts waiting for a
    core."""
    out = reset_schedule(home_path)
    env = child_env()
    argv = [*relay_argv(), "gateway", "run", "--once", "--home", str(home_path)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(workers)
    ]
    codes = [proc.wait() for proc in procs]
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    print(f"    {workers} process(es): {elapsed:.2f} s wall, {cpu:.2f} s CPU", flush=True)
    if any(codes):
        raise RuntimeError(f"relay gateway run --once exited with {codes}")
    return elapsed, bundles_per_agent(out)


def daemon_pass(home_path: Path, workers: int, every: int = 10) -> tuple[float, Counter[str]]:
    """Seconds ``workers`` running ``relay gateway run`` daemons (started, ready and idle) take
    for one period's pass: from the start of the period to the last daemon's report that it is
    done (``RELAY_PERIOD=`` on its ``NOTIFY_SOCKET``), and how many bundles each agent got.

    This is a pass as a service runs it every period: start-up (Python, the imports, the
    store's engine) was paid once when the service started, not in each pass. Every agent is
    made due at a period start at least 12 s away (8 s or more after the reset); the daemons'
    passes before it (as they start, and at any period start between) find nobody due and must
    have reported before it."""
    import signal
    import socket

    from outer_gateway.fleet import period_end

    start = period_end(int(time.time()) + 12, every)  # the reset and its vacuum take 1-4 s
    out = reset_schedule(home_path, start, every)
    env = child_env()
    argv = [*relay_argv(), "gateway", "run", "--home", str(home_path)]
    sockets, procs = [], []
    try:
        for index in range(workers):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(out.parent / f".notify-{os.getpid()}-{index}"))
            sockets.append(sock)
            notify = {**env, "NOTIFY_SOCKET": sock.getsockname()}
            with (out.parent / f"daemon-{index}.log").open("ab") as log:
                procs.append(subprocess.Popen(argv, env=notify, stdout=log, stderr=log))
        elapsed, used = _wait_for_the_pass(sockets, procs, start)
    except RuntimeError as exc:
        logs = [out.parent / f"daemon-{i}.log" for i in range(workers)]
        said = [
            line
            for log in logs
            for line in log.read_text(errors="replace").splitlines()
            if "exported" not in line
        ]
        raise RuntimeError(f"{exc}; the daemons said: {said[-10:]}") from None
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
        for sock in sockets:
            Path(sock.getsockname()).unlink(missing_ok=True)
            sock.close()
    cores = os.cpu_count() or 1
    print(
        f"    {workers} daemon(s): {elapsed:.2f} s from the period's start, "
        f"the machine's {cores} processors {used * cores:.2f} busy",
        flush=True,
    )
    return elapsed, bundles_per_agent(out)


def _wait_for_the_pass(
    sockets: list[Any], procs: list[subprocess.Popen[bytes]], start: int
) -> tuple[float, float]:
    """Seconds from ``start`` to the last daemon's first period report after it, and the share
    of the machine's processors busy meanwhile."""
    import select

    reports: list[list[float]] = [[] for _ in sockets]  # when each daemon said a period was done
    machine: tuple[float, float] | None = None
    while not all(r and r[-1] > start for r in reports):
        if any(proc.poll() is not None for proc in procs):
            raise RuntimeError("relay gateway run exited during the pass (daemon-N.log)")
        if machine is None and time.time() >= start:
            machine = busy_cores()
        wait = 1.0 if machine is not None else min(1.0, max(0.0, start - time.time()))
        ready, _, _ = select.select(sockets, [], [], wait)
        for sock in ready:
            if any(x.startswith(b"RELAY_PERIOD=") for x in sock.recv(4096).splitlines()):
                reports[sockets.index(sock)].append(time.time())
    if machine is None or not all(len(r) >= 2 for r in reports):
        raise RuntimeError("the daemons were not ready 8 s before the period: run it again")
    after = busy_cores()
    return max(r[-1] for r in reports) - start, (after[0] - machine[0]) / (after[1] - machine[1])


def bundles_per_agent(folder: Path) -> Counter[str]:
    """agent name -> number of bundle files for it in ``folder``."""
    return Counter(p.name.split("-to-", 1)[1].split(".", 1)[0] for p in folder.glob("*.bundle"))


def exactly_once(counts: Counter[str], agents: int) -> bool:
    """Every agent of the fleet got one bundle, none two."""
    return len(counts) == agents and set(counts.values()) == {1}


# -- the database ----------------------------------------------------------------------------


def create_database() -> str | None:
    """A fresh database on the local PostgreSQL server, as a SQLAlchemy URL; None if none."""
    try:
        import psycopg

        name = f"relay_bench_{os.getpid()}"
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # a benchmark reports why it could not run
        print(f"PostgreSQL not reachable at {PG_ADMIN}: {exc}")
        return None
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def drop_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- the run ---------------------------------------------------------------------------------


def _settings() -> tuple[int, int]:
    return int(os.environ.get(AGENTS_ENV, "10000")), int(os.environ.get(RUNS_ENV, "3"))


def sqlcipher_row(folder: Path, agents: int, runs: int) -> dict[str, Any]:
    home = folder / "sqlcipher"
    started = time.perf_counter()
    build_fleet(home, agents)
    print(f"SQLCipher fleet of {agents} agents built in {time.perf_counter() - started:.1f} s")
    times = []
    for _ in range(runs):
        elapsed, counts = one_pass(home, 1)
        times.append(elapsed)
        print(
            f"  SQLCipher pass, 1 process: {elapsed:.2f} s, exactly once: "
            f"{exactly_once(counts, agents)}"
        )
    return {"median": statistics.median(times), "times": times}


def postgres_rows(folder: Path, agents: int, runs: int) -> dict[str, Any] | None:
    """Two processes against one, in pairs run in turn: as ``--once`` processes (each pass
    pays the processes' start-up) and as running daemons (a period's pass as a service runs
    it)."""
    url = create_database()
    if url is None:
        return None
    home = folder / "postgres"
    try:
        started = time.perf_counter()
        build_fleet(home, agents, url)
        print(f"PostgreSQL fleet of {agents} agents built in {time.perf_counter() - started:.1f} s")
        return {
            "once": _pairs(home, agents, runs, one_pass, "--once processes"),
            "daemon": _pairs(home, agents, runs, daemon_pass, "daemons"),
        }
    finally:
        drop_database(url)


def _pairs(
    home: Path,
    agents: int,
    runs: int,
    measure: Callable[[Path, int], tuple[float, Counter[str]]],
    what: str,
) -> dict[str, Any]:
    pairs, once = [], True
    for _ in range(runs):
        two, counts_two = measure(home, 2)
        one, counts_one = measure(home, 1)
        ok = exactly_once(counts_two, agents) and exactly_once(counts_one, agents)
        once = once and ok
        pairs.append((two, one))
        print(
            f"  PostgreSQL pass, {what}: 2 {two:.2f} s, 1 {one:.2f} s, "
            f"throughput {one / two:.2f}x, exactly once: {ok}"
        )
    return {
        "two": statistics.median(p[0] for p in pairs),
        "one": statistics.median(p[1] for p in pairs),
        "ratio": statistics.median(p[1] / p[0] for p in pairs),
        "range": (min(p[1] / p[0] for p in pairs), max(p[1] / p[0] for p in pairs)),
        "once": once,
    }


def main() -> None:
    agents, runs = _settings()
    with tempfile.TemporaryDirectory(prefix="relay-bench-fleet-") as tmp:
        folder = Path(tmp)
        lite = sqlcipher_row(folder, agents, runs)
        pg = postgres_rows(folder, agents, runs)
    print("\n| measure | relay | reference | ratio | target | verdict |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    verdict = "met" if lite["median"] <= 30 else "NOT met"
    print(
        f"| `gateway run` pass, {agents} agents x 100 secrets, SQLCipher, 2 cores | "
        f"{lite['median']:.2f} s | - | - | <= 30 s | {verdict} |"
    )
    if pg is None:
        print("| the same on PostgreSQL, 2 processes | not measured (no PostgreSQL) | | | | ? |")
        return
    for key, what in (("daemon", "running daemons"), ("once", "`--once` processes")):
        row = pg[key]
        met = row["ratio"] >= 1.6 and row["once"]
        low, high = row["range"]
        print(
            f"| the same on PostgreSQL, 2 `gateway run` {what} | {row['two']:.2f} s | "
            f"1: {row['one']:.2f} s | {row['ratio']:.2f}x throughput (pairs {low:.2f}-{high:.2f}) "
            f"| >= 1.6x, each agent once ({'yes' if row['once'] else 'NO'}) | "
            f"{'met' if met else 'NOT met'} |"
        )


def _cli(argv: list[str]) -> int:
    if argv[0] == "build":
        build_fleet(Path(argv[1]), _settings()[0], argv[2] if len(argv) > 2 else "")
        return 0
    if argv[0] in ("pass", "daemon-pass"):
        measure = one_pass if argv[0] == "pass" else daemon_pass
        elapsed, counts = measure(Path(argv[1]), int(argv[2]))
        ok = exactly_once(counts, _settings()[0])
        print(f"{elapsed:.3f} s, {sum(counts.values())} bundles, exactly once: {ok}")
        return 0 if ok else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(_cli(sys.argv[1:]))
    main()
