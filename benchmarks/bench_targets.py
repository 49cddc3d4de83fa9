"""The rows of issue #14's table, each next to its reference measured in the same run.

- ``relay agent get``: median wall time of 20 runs against ``python -c pass`` in the same
  virtualenv, run in turn (A B A B ...); the ratio is the median of the pairwise ratios.
- N secrets (default 100,000), first export + import: relay's ``build_bundle`` and the agent's
  import of it (in process), against the chain a user could script instead: ``age`` encryption
  and ``minisign`` signature of a JSON file on one side, verify + decrypt + Python ``sqlite3``
  insert on the other (installed from Debian's packages with apt-get when missing and root).
- the same with 1% of the values changed (the chain must redo everything): relay sends a delta
  bundle on the acknowledged one (spec §8.3). Measured under ``farm-bench`` (relay and the chain
  in turn, medians, ratio pair by pair), one round per process (``benchmarks/delta_round.py``).
- ``relay agent run`` resident memory (VmRSS) when idle, with 10,000 secrets, and again idle
  after it applied one bundle: medians of ``RSS_RUNS`` starts of the service on the same home.
- a plot (PNG) of time against number of secrets, relay against the chain.

Figures only: nothing here asserts a time. ``RELAY_BENCH_TARGET_SIZES`` (default
``10000,30000,100000``) sets the plot's sizes; the largest is the table's N.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.bench_bundle import change_one_percent, make_values, relay_argv
from tests.children import child_env

SIZES_ENV = "RELAY_BENCH_TARGET_SIZES"
DEFAULT_SIZES = (10_000, 30_000, 100_000)
GET_RUNS = 20
RSS_SECRETS = 10_000
RSS_RUNS = 3
VALID_FOR = 7 * 24 * 3600
PLOT = Path(__file__).resolve().parent.parent / "docs" / "performance-secrets.png"


@dataclass(frozen=True)
class Target:
    """One row of the table: relay's figure, the reference's, and the target on their ratio."""

    measure: str
    relay: float
    reference: float | None
    unit: str
    target: str
    met: bool | None
    pairwise: float | None = None  # the median of pairwise ratios, when measured in turn

    def line(self) -> str:
        ref = "-" if self.reference is None else f"{self.reference:.3f} {self.unit}"
        value = self.pairwise or (self.relay / self.reference if self.reference else None)
        ratio = "" if value is None else f"{value:.2f}x"
        verdict = {True: "met", False: "NOT met", None: "?"}[self.met]
        return (
            f"| {self.measure} | {self.relay:.3f} {self.unit} | {ref} | {ratio} | "
            f"{self.target} | {verdict} |"
        )


def _env(folder: Path) -> dict[str, str]:
    env = child_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
    return env


def _wall(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


# -- homes -----------------------------------------------------------------------------------


def _homes(folder: Path) -> tuple[Any, Any, Any, Any]:
    from inner_agent.store import AgentStore
    from outer_gateway.store import GatewayStore
    from relay.home import Home

    now = int(time.time())
    gw_home = Home.create(folder / "gateway", "gateway", "gw")
    ag_home = Home.create(folder / "agent", "agent", "plant7")
    gw = GatewayStore.open(gw_home)
    ag = AgentStore.open(ag_home)
    gw.enroll(ag_home.identity, now)
    gw.grant("plant7", "app/**")
    ag.trust(gw_home.identity, now)
    return gw_home, ag_home, gw, ag


def relay_rounds(n: int, folder: Path) -> tuple[float, float]:
    """Seconds of (first export + import, export + import after 1% changed)."""
    from inner_agent.importer import AgentImporter
    from outer_gateway.export import build_bundle

    values = make_values(n, seed=n)
    changed = change_one_percent(values, seed=n + 1)
    gw_home, ag_home, gw, ag = _homes(folder)
    now = int(time.time())
    try:
        gw.import_secrets(values, None, now)
        importer = AgentImporter(ag_home, ag, lambda: int(time.time()))
        agent = gw.agent("plant7")
        started = time.perf_counter()
        first = build_bundle(gw_home, gw, agent, now, VALID_FOR)
        outcome = importer.import_bytes(first.name, first.data)
        t_first = time.perf_counter() - started
        assert outcome.status == "applied", outcome.message
        gw.import_secrets(changed, None, now + 1)
        started = time.perf_counter()
        second = build_bundle(gw_home, gw, agent, now + 1, VALID_FOR)
        outcome = importer.import_bytes(second.name, second.data)
        t_delta = time.perf_counter() - started
        assert outcome.status == "applied", outcome.message
    finally:
        gw.close()
        ag.close()
    return t_first, t_delta


# -- the reference chain: age + minisign + sqlite3 -------------------------------------------


def ensure_tools() -> str | None:
    """``None`` when age and minisign are there (installing them if root); else why not."""
    missing = [t for t in ("age", "age-keygen", "minisign") if shutil.which(t) is None]
    if not missing:
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return (
            f"{', '.join(missing)} missing and not root with apt-get: apt-get install age minisign"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "age", "minisign"],
    ):
        proc = subprocess.run(argv, env=env, capture_output=True, check=False)
        if proc.returncode != 0 and argv[1] == "install":
            return f"apt-get install age minisign failed: {proc.stderr.decode()[-200:]}"
    still = [t for t in ("age", "age-keygen", "minisign") if shutil.which(t) is None]
    return f"still missing after apt-get: {', '.join(still)}" if still else None


def chain_round(values: dict[str, bytes], folder: Path) -> float:
    """Seconds for the chain a user could script: dump JSON, age-encrypt, minisign; then
    verify, decrypt and insert every row into a fresh sqlite3 database in one transaction."""
    folder.mkdir(parents=True, exist_ok=True)
    key, sec, pub = folder / "age.key", folder / "ms.key", folder / "ms.pub"
    if not key.exists():
        subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
        subprocess.run(
            ["minisign", "-G", "-W", "-f", "-s", str(sec), "-p", str(pub)],
            check=True,
            capture_output=True,
        )
    recipient = re.search(r"public key: (\S+)", key.read_text())
    assert recipient is not None
    plain, sealed, db = folder / "secrets.json", folder / "secrets.json.age", folder / "s.db"
    db.unlink(missing_ok=True)
    started = time.perf_counter()
    plain.write_text(json.dumps({p: v.hex() for p, v in values.items()}))
    subprocess.run(["age", "-r", recipient.group(1), "-o", str(sealed), str(plain)], check=True)
    subprocess.run(
        ["minisign", "-S", "-s", str(sec), "-m", str(sealed)], check=True, capture_output=True
    )
    subprocess.run(
        ["minisign", "-V", "-q", "-p", str(pub), "-m", str(sealed)], check=True, capture_output=True
    )
    decrypted = subprocess.run(
        ["age", "-d", "-i", str(key), str(sealed)], check=True, capture_output=True
    ).stdout
    rows = [(p, bytes.fromhex(v)) for p, v in json.loads(decrypted).items()]
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE secrets (path TEXT PRIMARY KEY, value BLOB NOT NULL)")
    with conn:
        conn.executemany("INSERT INTO secrets VALUES (?, ?)", rows)
    conn.close()
    return time.perf_counter() - started


# -- agent get and agent run -----------------------------------------------------------------


def get_vs_pass(folder: Path) -> tuple[float, float, float]:
    """Medians of ``relay agent get`` and ``python -c pass``, and the median pairwise ratio."""
    gw_home, ag_home, gw, ag = _homes(folder)
    try:
        from inner_agent.importer import AgentImporter
        from outer_gateway.export import build_bundle

        now = int(time.time())
        gw.import_secrets({"app/get/one": b"bench-value"}, None, now)
        bundle = build_bundle(gw_home, gw, gw.agent("plant7"), now, VALID_FOR)
        AgentImporter(ag_home, ag, lambda: now).import_bytes(bundle.name, bundle.data)
    finally:
        gw.close()
        ag.close()
    env = _env(folder)
    get = [*relay_argv(), "agent", "get", "--home", str(folder / "agent"), "app/get/one"]
    empty = [sys.executable, "-c", "pass"]
    _wall(get, env), _wall(empty, env)  # warm-up: byte code compiled, caches filled
    pairs = [(_wall(get, env), _wall(empty, env)) for _ in range(GET_RUNS)]
    return (
        statistics.median(a for a, _ in pairs),
        statistics.median(b for _, b in pairs),
        statistics.median(a / b for a, b in pairs),
    )


def idle_rss(folder: Path) -> tuple[float, float]:
    """Medians (``RSS_RUNS`` starts on the same home) of the VmRSS in MB of ``relay agent run``
    with 10,000 secrets: idle a few seconds after its API listens, and idle a few seconds
    after it applied one more bundle from its inbox (which a child process applies: ADR 0022)."""
    from inner_agent.importer import AgentImporter
    from outer_gateway.export import build_bundle

    gw_home, ag_home, gw, ag = _homes(folder)
    inbox = folder / "inbox"
    inbox.mkdir(mode=0o700)
    try:
        now = int(time.time())
        gw.import_secrets(make_values(RSS_SECRETS, seed=7), None, now)
        bundle = build_bundle(gw_home, gw, gw.agent("plant7"), now, VALID_FOR)
        AgentImporter(ag_home, ag, lambda: now).import_bytes(bundle.name, bundle.data)
        later = []
        for run in range(RSS_RUNS):  # one newer bundle (one value changed) for each start
            gw.import_secrets({"app/grp0/secret0": f"v{run}".encode()}, None, now + run + 1)
            later.append(build_bundle(gw_home, gw, gw.agent("plant7"), now + run + 1, VALID_FOR))
    finally:
        gw.close()
        ag.close()
    env = _env(folder)
    home = str(folder / "agent")
    subprocess.run(
        [*relay_argv(), "agent", "config", "set", "--home", home, "agent.inbox", str(inbox)],
        env=env,
        check=True,
        capture_output=True,
    )
    pairs = [_one_idle_rss(folder, inbox, b.name, b.data) for b in later]
    return statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs)


def _one_idle_rss(folder: Path, inbox: Path, name: str, data: bytes) -> tuple[float, float]:
    proc = subprocess.Popen(
        [*relay_argv(), "agent", "run", "--home", str(folder / "agent")],
        env=_env(folder),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "listening" in line:
                break
        time.sleep(5)  # idle: what it holds after start-up settles (a benchmark, not a test)
        idle = _vm_rss(proc.pid)
        partial = inbox / f".{name}.partial"
        partial.write_bytes(data)
        partial.rename(inbox / name)
        for line in proc.stderr:
            if "event bundle.applied" in line:
                break
        time.sleep(5)
        return idle, _vm_rss(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def _vm_rss(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    assert match is not None
    return int(match.group(1)) / 1024


# -- the run ---------------------------------------------------------------------------------


def _sizes() -> list[int]:
    raw = os.environ.get(SIZES_ENV)
    return sorted(int(s) for s in raw.split(",")) if raw else list(DEFAULT_SIZES)


def plot(points: list[tuple[int, float, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label="relay export + import")
    ax.plot([p[0] for p in points], [p[2] for p in points], "s--", label="age + minisign + sqlite3")
    ax.set_xlabel("secrets")
    ax.set_ylabel("seconds (first export + import)")
    ax.set_title("First export + import, same run, same machine")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    rows: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="relay-bench-targets-") as tmp:
        folder = Path(tmp)
        t_get, t_pass, ratio = get_vs_pass(folder / "get")
        print(
            f"agent get: median {t_get:.4f} s, python -c pass {t_pass:.4f} s, pairwise {ratio:.2f}x"
        )
        rows.append(
            Target(
                "`relay agent get`, median of 20", t_get, t_pass, "s", "<= 3x", ratio <= 3, ratio
            )
        )
        why_not = ensure_tools()
        points: list[tuple[int, float, float]] = []
        for n in _sizes():
            t_first, t_delta = relay_rounds(n, folder / f"relay-{n}")
            values = make_values(n, seed=n)
            t_chain = chain_round(values, folder / f"chain-{n}") if why_not is None else None
            t_chain2 = (
                chain_round(change_one_percent(values, seed=n + 1), folder / f"chain-{n}")
                if why_not is None
                else None
            )
            print(
                f"N={n}: relay first {t_first:.3f} s, 1% {t_delta:.3f} s; "
                f"chain {t_chain} / {t_chain2}"
            )
            if t_chain is not None:
                points.append((n, t_first, t_chain))
            if n == max(_sizes()):
                rows.append(
                    _ratio_row(f"{n} secrets, first export + import", t_first, t_chain, 2.5)
                )
                rows.append(
                    _delta_row(n, folder / "delta", t_delta, t_chain2)
                    if why_not is None
                    else _ratio_row(f"{n} secrets, 1% changed", t_delta, None, 0.25)
                )
        if why_not is not None:
            print(f"reference chain not measured: {why_not}")
        rss, rss_after = idle_rss(folder / "rss")
        for label, value in (("idle RSS", rss), ("idle RSS after one import", rss_after)):
            rows.append(
                Target(
                    f"`relay agent run` {label}, {RSS_SECRETS} secrets, median of {RSS_RUNS}",
                    value,
                    None,
                    "MB",
                    "<= 50 MB",
                    value <= 50,
                )
            )
        if points:
            plot(points, PLOT)
            print(f"plot: {PLOT}")
    print("\n| measure | relay | reference | ratio | target | verdict |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    for row in rows:
        print(row.line())


DELTA_RUNS = 7
FARM = ("farm-bench", "--warmup", "1", "--timeout", "900")


def _delta_row(n: int, folder: Path, in_process: float, chain: float | None) -> Target:
    """The 1%-changed row from farm-bench (relay's delta round against the chain, in turn); the
    in-process figures of this run if farm-bench is missing."""
    measure = f"{n} secrets, 1% changed, export + import"
    figures = farm_delta(n, folder)
    if isinstance(figures, str):
        print(f"farm-bench not used ({figures}): in-process figures")
        return _ratio_row(measure, in_process, chain, 0.25)
    relay, reference, pairwise = figures
    return Target(
        f"{measure} (farm-bench)", relay, reference, "s", "<= 0.25x", pairwise <= 0.25, pairwise
    )


def farm_delta(n: int, folder: Path) -> tuple[float, float, float] | str:
    """Medians of relay's delta round and the chain's round, and the median pairwise ratio,
    as each process reports its work (``seconds S``), run in turn by farm-bench."""
    if shutil.which("farm-bench") is None:
        return "farm-bench is not installed"
    root = Path(__file__).resolve().parent.parent
    folder.mkdir(parents=True, exist_ok=True)
    module = [sys.executable, "-m", "benchmarks.delta_round"]
    subprocess.run([*module, "prepare", str(folder), str(n)], cwd=root, check=True)
    out_a, out_b = folder / "relay.out", folder / "chain.out"
    run_a = f"exec {' '.join(module)} relay {folder} >> {out_a} 2>&1"
    run_b = f"exec {' '.join(module)} chain {folder} >> {out_b} 2>&1"
    report = subprocess.run(
        [*FARM, "-n", str(DELTA_RUNS), "--vs", f"sh -c '{run_b}'", "--", "sh", "-c", run_a],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    print(report.stdout.rstrip())
    relay, chain = _reported(out_a)[1:], _reported(out_b)[1:]  # the first is the warm-up's
    if not relay or len(relay) != len(chain):
        return f"farm-bench runs incomplete: {report.stderr.strip()[-200:]}"
    pairwise = statistics.median(a / b for a, b in zip(relay, chain, strict=True))
    print(f"1% changed, per process: relay {relay}, chain {chain}")
    return statistics.median(relay), statistics.median(chain), pairwise


def _reported(path: Path) -> list[float]:
    """The ``seconds S`` lines a round printed, in order."""
    if not path.exists():
        return []
    found = re.findall(r"^seconds (\d+\.\d+)$", path.read_text(), flags=re.MULTILINE)
    return [float(value) for value in found]


def _ratio_row(measure: str, relay: float, chain: float | None, limit: float) -> Target:
    met = None if chain is None else relay / chain <= limit
    return Target(measure, relay, chain, "s", f"<= {limit}x", met)


if __name__ == "__main__":
    main()
