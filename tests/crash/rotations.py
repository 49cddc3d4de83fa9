"""The kill harness for key rotations: SIGKILL real ``relay gateway key rotate``, ``relay gateway
root rotate`` and ``relay agent key rotate`` processes, then check that both homes still open,
both audit chains verify, and the site keeps receiving with no visit.

Kill points take the three kinds in turn. Every ``stage_share``-th point of a kind is a named
stage (``RELAY_CRASH_AT``, :mod:`relay.crashpoint`): ``key.next_written``, ``key.certified``,
``key.swapped``, ``root.signed``, ``root.saved``, ``agent_key.next_written``; the others a random
delay (seeded) within the window the command works in, measured once per kind on an unkilled run.

After each kill, nothing is repaired by hand:

- the gateway's home and ``trust.json`` load, its audit chain verifies;
- the agent's home opens, its audit chain verifies;
- ``relay agent key rotate`` run again succeeds (or says ``rotation_pending`` when its request
  was recorded): a kill never leaves the agent unable to rotate;
- the site keeps receiving: a new value put at the gateway, the return stream imported, a bundle
  exported (which completes a signing-key rotation a kill interrupted) and applied by the agent,
  which then serves the new value; the gateway's current key is the one the agent follows, and
  the agent's own rotation has completed (no ``next`` key left).

Only the rotation command runs as a killed child process; the rest runs in-process (cheap). The
long run is part of ``make crash``::

    .venv/bin/python -m tests.crash.rotations --points 30 [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from inner_agent.audit import AgentAudit
from outer_gateway import keyring
from outer_gateway.audit import GatewayAudit
from outer_gateway.store import GatewayStore
from relay import crashpoint
from relay.audit.chain import AuditRecord, verify_chain
from relay.home import Home
from tests.conftest import Result, run_relay
from tests.crash.world import CrashCheckFailed

RELAY = [sys.executable, "-m", "relay"]
KINDS = ("key", "root", "agent_key")
STAGES = {
    "key": ("key.next_written", "key.certified", "key.swapped"),
    "root": ("root.signed", "root.saved"),
    "agent_key": ("agent_key.next_written",),
}
STAGE_SHARE = 2
TIMEOUT = 120.0


@dataclass
class RotationSite:
    """A gateway with a root and an agent that pinned it, made with the CLI."""

    base: Path
    rng: random.Random
    root_key: Path = field(init=False)
    values: int = 0
    roots_made: int = 1
    killed: Counter[str] = field(default_factory=Counter)
    finished: Counter[str] = field(default_factory=Counter)
    stages: Counter[str] = field(default_factory=Counter)
    points_of: Counter[str] = field(default_factory=Counter)
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)
    runs: int = 0

    def __post_init__(self) -> None:
        self.root_key = self.base / "vault" / "root1.key"

    @property
    def gw(self) -> Path:
        return self.base / "gw"

    @property
    def ag(self) -> Path:
        return self.base / "ag"

    @property
    def env(self) -> dict[str, str]:
        return {"RELAY_ROOT_PASSPHRASE_FILE": str(self.base / "root.pass")}

    def cli(self, *args: str, stdin: bytes | None = None) -> Result:
        return run_relay(*args, stdin=stdin, env=self.env)

    def ok(self, *args: str, stdin: bytes | None = None) -> Result:
        result = self.cli(*args, stdin=stdin)
        if result.status != 0:
            raise CrashCheckFailed(f"relay {' '.join(args[:3])} failed: {result.err.strip()}")
        return result

    # -- set-up --------------------------------------------------------------------------------

    def enroll(self) -> None:
        (self.base / "root.pass").write_text("root passphrase of the rotation crash run\n")
        gw, ag = str(self.gw), str(self.ag)
        self.ok("gateway", "init", "--home", gw, "--name", "hq")
        self.ok("gateway", "root", "init", "--home", gw, "--root-key", str(self.root_key))
        request = self.base / "plant7.request"
        self.ok("agent", "init", "--home", ag, "--name", "plant7", "--request-out", str(request))
        self.ok("gateway", "enroll", "--home", gw, str(request))
        self.ok("gateway", "grant", "--home", gw, "plant7", "app/*")
        self.ok("gateway", "identity", "--home", gw, "--out", str(self.base / "hq.identity"))
        self.ok("agent", "trust", "--home", ag, str(self.base / "hq.identity"))
        self.site_receives("enrollment")

    # -- the killed command ----------------------------------------------------------------------

    def command(self, kind: str) -> tuple[str, ...]:
        gw, ag = str(self.gw), str(self.ag)
        if kind == "key":
            return ("gateway", "key", "rotate", "--home", gw, "--root-key", str(self.root_key))
        if kind == "root":
            self.roots_made += 1
            new = self.base / "vault" / f"root{self.roots_made}.key"
            return (
                "gateway", "root", "rotate", "--home", gw,
                "--root-key", str(self.root_key), "--new-root-key", str(new),
            )  # fmt: skip
        return ("agent", "key", "rotate", "--home", ag)

    def spawn(self, args: tuple[str, ...], stage: str | None) -> subprocess.Popen[bytes]:
        self.runs += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
        env.update(self.env)
        if stage is not None:
            env[crashpoint.ENV] = stage
        log = self.base / "logs" / f"{self.runs:04d}-{'-'.join(args[:3])}.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("wb") as out:
            return subprocess.Popen(
                [*RELAY, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env
            )

    def calibrate(self) -> None:
        """One unkilled run of each kind: when its work happens (and that it works)."""
        for kind in KINDS:
            args = self.command(kind)
            started = time.monotonic()
            proc = self.spawn(args, None)
            if proc.wait(timeout=TIMEOUT) != 0:
                raise CrashCheckFailed(f"calibration: relay {' '.join(args[:3])} failed")
            self.windows[kind] = (0.1, (time.monotonic() - started) * 1.1)
            self.after(kind, "calibration")

    def stage(self, kind: str, stage_share: int) -> str | None:
        count = self.points_of[kind]
        self.points_of[kind] += 1
        if not self.windows or count % stage_share == stage_share - 1:
            chosen = self.rng.choice(STAGES[kind])
            self.stages[chosen] += 1
            return chosen
        return None

    def kill_point(self, kind: str, where: str, stage_share: int) -> None:
        stage = self.stage(kind, stage_share)
        proc = self.spawn(self.command(kind), stage)
        if stage is None:
            try:
                proc.wait(timeout=self.rng.uniform(*self.windows[kind]))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
        if proc.returncode == -signal.SIGKILL:
            self.killed[kind] += 1
        elif proc.returncode == 0:
            self.finished[kind] += 1
        else:
            raise CrashCheckFailed(f"{where}: an unkilled {kind} rotation exited {proc.returncode}")
        self.check_homes(where)
        self.after(kind, where)

    # -- after a kill (or a finished run) --------------------------------------------------------

    def after(self, kind: str, where: str) -> None:
        if kind == "root":
            self._follow_root(where)
        if kind == "agent_key":
            again = self.cli("agent", "key", "rotate", "--home", str(self.ag))
            if again.status != 0 and "rotation_pending" not in again.err:
                raise CrashCheckFailed(f"{where}: agent key rotate again: {again.err.strip()}")
        self.site_receives(where)
        if kind == "agent_key" and Home.open(self.ag, "agent").read_side_key("next") is not None:
            raise CrashCheckFailed(f"{where}: the agent's key rotation never completes")
        self.check_homes(f"{where} (after)")

    def _follow_root(self, where: str) -> None:
        """Which root file is current now: the new one if the kill came after ``trust.json``."""
        ring = self._ring(where)
        candidate = self.base / "vault" / f"root{self.roots_made}.key"
        if candidate.exists():
            public = json.loads(candidate.read_text())["root_public"]
            if bytes.fromhex(public) == ring.root.key:
                self.root_key = candidate

    def check_homes(self, where: str) -> None:
        gw_home = Home.open(self.gw, "gateway")
        self._ring(where)
        store = GatewayStore.open(gw_home)
        try:
            records = GatewayAudit(gw_home, store.engine).own_records()
        finally:
            store.close()
        _verify(records, f"{where}: gateway")
        _verify(AgentAudit(Home.open(self.ag, "agent")).records(), f"{where}: agent")

    def _ring(self, where: str) -> keyring.Keyring:
        try:
            ring = keyring.load(Home.open(self.gw, "gateway"))
        except Exception as exc:
            raise CrashCheckFailed(f"{where}: trust.json does not load: {exc}") from None
        if ring is None:
            raise CrashCheckFailed(f"{where}: the gateway lost its root")
        return ring

    def site_receives(self, where: str) -> None:
        """A new value reaches the agent through a return stream and a forward bundle."""
        self.values += 1
        value = f"value-{self.values}".encode()
        gw, ag = str(self.gw), str(self.ag)
        back, out = self.base / "back", self.base / "out"
        for folder in (back, out):
            shutil.rmtree(folder, ignore_errors=True)
        self.ok("gateway", "secret", "put", "--home", gw, "app/pw", "-", stdin=value)
        self.ok("agent", "audit", "export", "--home", ag, "--to", str(back))
        imported = json.loads(self.ok("gateway", "import", "--home", gw, "--json", str(back)).out)
        if any(o["status"] not in ("imported", "duplicate") for o in imported):
            raise CrashCheckFailed(f"{where}: the return stream was refused: {imported}")
        self.ok("gateway", "export", "--home", gw, "--to", str(out))
        applied = json.loads(self.cli("agent", "import", "--home", ag, "--json", str(out)).out)
        if [o["status"] for o in applied] != ["applied"]:
            raise CrashCheckFailed(f"{where}: the agent did not apply the bundle: {applied}")
        got = self.ok("agent", "get", "--home", ag, "app/pw").stdout
        if got != value + b"\n":
            raise CrashCheckFailed(f"{where}: the agent serves {got!r}, not the new value")
        status = json.loads(self.ok("agent", "status", "--home", ag, "--json").out)
        active = Home.open(self.gw, "gateway").identity.key_id
        if status["gateway_key_id"] != active:
            raise CrashCheckFailed(f"{where}: the agent follows {status['gateway_key_id']}")


def _verify(records: list[AuditRecord], where: str) -> None:
    """The chain verifies from its first held record (the agent prunes what was acknowledged)."""
    first = min(records, key=lambda r: r.seq, default=None)
    anchor = None if first is None or first.seq == 1 else (first.seq - 1, first.prev_hash)
    if not verify_chain(records, anchor).ok:
        raise CrashCheckFailed(f"{where}: the audit chain does not verify")


def run_points(
    base: Path, seed: int, points: int, stage_share: int = STAGE_SHARE, calibrate: bool = True
) -> RotationSite:
    """Enroll a site under ``base`` and run ``points`` rotation kill points on it."""
    site = RotationSite(base, random.Random(seed))
    site.enroll()
    if calibrate:
        site.calibrate()
    for index in range(points):
        kind = KINDS[index % len(KINDS)]
        site.kill_point(kind, f"seed {seed}, rotation kill point {index + 1} ({kind})", stage_share)
    return site


def summary(site: RotationSite, seed: int) -> str:
    return (
        f"seed {seed}: rotations killed {dict(site.killed)}, finished before their kill "
        f"{dict(site.finished)}, named stages {dict(site.stages)}, {site.values} values delivered"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=30, help="kill points (default 30)")
    parser.add_argument("--seed", type=int, default=None, help="RNG seed (default: random)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"rotation crash harness: seed {seed} ({args.points} kill points)")
    sys.stdout.flush()
    with tempfile.TemporaryDirectory(prefix="relay-crash-rot-") as base:
        try:
            site = run_points(Path(base), seed, args.points)
        except CrashCheckFailed as exc:
            print(f"FAILED (reproduce with --seed {seed}): {exc}")
            return 1
    print(summary(site, seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
