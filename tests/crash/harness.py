"""The kill harness: SIGKILL real ``relay`` processes at random points while they work on large
bundles, restart them, and check the invariants of :mod:`tests.crash.world` after every kill.

Four kinds of kill point, taken in turn:

- ``export``: ``relay gateway export`` killed while it reads, seals, commits and writes;
- ``import``: ``relay agent import FILE`` killed while it verifies, decrypts and applies;
- ``daemon``: ``relay agent run`` killed while its inbox worker imports a dropped bundle;
- ``audit_export``: ``relay agent audit export`` killed while it seals, commits and writes the
  agent's audit bundles (no file without its ``audit.exported`` record, no record lost).

The delay before each SIGKILL is drawn (seeded RNG) from the window in which the process does its
work, measured once per kind on an unkilled run; everything else waits on events (a process
exiting, the daemon's notifications on ``NOTIFY_SOCKET``), never on a sleep. The long run::

    .venv/bin/python -m tests.crash.harness --points 210 --secrets 5000 --jobs 2 [--seed N]

``--jobs N`` runs N independent worlds side by side (seeds N, N+1, …), the points split between
them: the run is bound by process start-up, so two jobs on two cores take about half the time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from relay import crashpoint
from tests.agent_daemon import Notifications
from tests.crash.world import (
    CrashCheckFailed,
    Exported,
    World,
    agent_audit_head,
    check_audit_exports,
    make_world,
)

RELAY = [sys.executable, "-m", "relay"]
KINDS = ("export", "import", "daemon", "audit_export")
# Named stages (relay/crashpoint.py) each kind is also killed at: every third point of a kind.
STAGES = {
    "export": ("export.sealed", "export.committed", "write.synced", "export.written"),
    "import": ("apply.written", "apply.committed"),
    "daemon": ("apply.written", "apply.committed"),
    "audit_export": ("audit_export.sealed", "audit_export.committed", "audit_export.written"),
}
STAGE_SHARE = 3
EVENT_TIMEOUT = 120.0


@dataclass
class Window:
    """When a kind of process does its work, in seconds after it was started (or poked)."""

    start: float
    end: float

    def draw(self, rng: random.Random) -> float:
        return rng.uniform(self.start, self.end)


@dataclass
class Harness:
    """Runs kill points against one world and keeps score."""

    world: World
    rng: random.Random
    logs: Path
    windows: dict[str, Window] = field(default_factory=dict)
    killed: Counter[str] = field(default_factory=Counter)
    finished: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    daemon: subprocess.Popen[bytes] | None = None
    notified: Notifications | None = None
    runs: int = 0
    stage_share: int = STAGE_SHARE
    points_of: Counter[str] = field(default_factory=Counter)

    # -- processes ---------------------------------------------------------------------------

    def spawn(
        self, *args: str, stage: str | None = None, notify: Path | None = None
    ) -> subprocess.Popen[bytes]:
        self.runs += 1
        log = self.logs / f"{self.runs:05d}-{args[0]}-{args[1]}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
        if notify is not None:
            env["NOTIFY_SOCKET"] = str(notify)
        if stage is not None:
            env[crashpoint.ENV] = stage
        with log.open("wb") as out:
            return subprocess.Popen(
                [*RELAY, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env
            )

    def run(self, *args: str) -> None:
        """Run to completion; it must succeed (a restart after a kill, or a calibration)."""
        proc = self.spawn(*args)
        status = proc.wait(timeout=EVENT_TIMEOUT)
        if status != 0:
            raise CrashCheckFailed(f"relay {' '.join(args[:2])} exited {status} after a restart")

    def stage(self, kind: str) -> str | None:
        """A named stage for every ``stage_share``-th kill point of ``kind`` (which is therefore
        always killed), else ``None`` (a random delay, which the process may outrun)."""
        count = self.points_of[kind]
        self.points_of[kind] += 1
        if count % self.stage_share != self.stage_share - 1:
            return None
        chosen = self.rng.choice(STAGES[kind])
        self.outcomes[f"{kind}: at {chosen}"] += 1
        return chosen

    def kill_after(self, proc: subprocess.Popen[bytes], delay: float | None) -> bool:
        """SIGKILL ``proc`` after ``delay`` seconds unless it exits first; True if killed.
        ``delay=None``: the process kills itself at its named stage; wait for that."""
        if delay is None:
            proc.wait(timeout=EVENT_TIMEOUT)
            return proc.returncode == -signal.SIGKILL
        try:
            proc.wait(timeout=delay)  # the deliberate random delay (or the process's exit)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        return False

    # -- calibration -------------------------------------------------------------------------

    def calibrate(self) -> None:
        """Time one unkilled run of each kind, so kills land while the work is under way."""
        gw, ag = str(self.world.pair.gw), str(self.world.pair.ag)
        started = time.monotonic()
        self.run("gateway", "agents", "--home", gw)  # interpreter, imports, opening the store
        boot = time.monotonic() - started
        started = time.monotonic()
        self.run("gateway", "export", "--home", gw, "--to", str(self.world.out))
        self.windows["export"] = Window(boot * 0.8, (time.monotonic() - started) * 1.1)
        (first,) = self.world.collect_exports("calibration")
        started = time.monotonic()
        self.run("agent", "import", "--home", ag, str(first.copy))
        self.windows["import"] = Window(boot * 0.8, (time.monotonic() - started) * 1.1)
        self.world.check_agent("calibration", first)
        started = time.monotonic()
        self.run("agent", "audit", "export", "--home", ag, "--to", str(self.audit_out))
        self.windows["audit_export"] = Window(boot * 0.8, (time.monotonic() - started) * 1.1)
        check_audit_exports(self.world, "calibration", self.audit_out)
        self.world.mutate()
        self.run("gateway", "export", "--home", gw, "--to", str(self.world.out))
        (second,) = self.world.collect_exports("calibration")
        self.start_daemon()
        started = time.monotonic()
        self.drop(second)
        self.wait_handled(second)
        self.windows["daemon"] = Window(0.0, (time.monotonic() - started) * 1.1)
        self.world.check_agent("calibration", second)
        (self.world.pair.root / "inbox" / second.copy.name).unlink()

    # -- kill points ---------------------------------------------------------------------------

    def kill_export(self, where: str) -> None:
        self.world.mutate()
        gw = str(self.world.pair.gw)
        stage = self.stage("export")
        args = ("gateway", "export", "--home", gw, "--to", str(self.world.out))
        proc = self.spawn(*args, stage=stage)
        killed = self.kill_after(proc, None if stage else self.windows["export"].draw(self.rng))
        self._count("export", killed, proc)
        new = self.world.collect_exports(where)
        self.outcomes["export: bundle written" if new else "export: nothing written"] += 1
        if not new:  # restart: the export is made, with a seq never used before
            self.run("gateway", "export", "--home", gw, "--to", str(self.world.out))
            self.world.collect_exports(f"{where} (restart)")

    def kill_import(self, where: str) -> None:
        bundle = self._next_bundle(where)
        ag = str(self.world.pair.ag)
        stage = self.stage("import")
        proc = self.spawn("agent", "import", "--home", ag, str(bundle.copy), stage=stage)
        killed = self.kill_after(proc, None if stage else self.windows["import"].draw(self.rng))
        self._count("import", killed, proc)
        applied = self.world.check_agent(where, bundle)
        self.outcomes[f"import: store {'new' if applied else 'old'}"] += 1
        self.run("agent", "import", "--home", ag, str(bundle.copy))  # restart: applied or dup
        if not self.world.check_agent(f"{where} (restart)", bundle):
            raise CrashCheckFailed(f"{where}: seq {bundle.seq} not applied after the restart")

    def kill_daemon(self, where: str) -> None:
        bundle = self._next_bundle(where)
        stage = self.stage("daemon")
        if stage is not None:
            self.stop_daemon()  # restarted with the stage set
        self.start_daemon(stage)
        assert self.daemon is not None
        self.drop(bundle)
        delay = None if stage else self.windows["daemon"].draw(self.rng)
        killed = self.kill_after(self.daemon, delay)
        self._count("daemon", killed, self.daemon)
        self._forget_daemon()
        applied = self.world.check_agent(where, bundle)
        self.outcomes[f"daemon: store {'new' if applied else 'old'}"] += 1
        self.start_daemon()  # restart: it finds the file again, applies it or calls it a duplicate
        self.wait_handled(bundle)
        if not self.world.check_agent(f"{where} (restart)", bundle):
            raise CrashCheckFailed(f"{where}: seq {bundle.seq} not applied after the restart")
        (self.world.pair.root / "inbox" / bundle.copy.name).unlink()

    @property
    def audit_out(self) -> Path:
        return self.world.pair.root / "audit-out"

    def kill_audit_export(self, where: str) -> None:
        ag = str(self.world.pair.ag)
        args = ("agent", "audit", "export", "--home", ag, "--to", str(self.audit_out))
        before = set(check_audit_exports(self.world, where, self.audit_out))
        stage = self.stage("audit_export")
        proc = self.spawn(*args, stage=stage)
        delay = None if stage else self.windows["audit_export"].draw(self.rng)
        killed = self.kill_after(proc, delay)
        self._count("audit_export", killed, proc)
        written = set(check_audit_exports(self.world, where, self.audit_out)) - before
        self.outcomes[f"audit_export: {'file' if written else 'no file'} written"] += 1
        # restart: a new export holds every record not acknowledged (none is, here), so the
        # records of an export killed before its file are not lost
        head = agent_audit_head(self.world)
        self.run(*args)
        after = check_audit_exports(self.world, f"{where} (restart)", self.audit_out)
        new = [after[name] for name in sorted(set(after) - before - written)]
        if not new:
            raise CrashCheckFailed(f"{where}: the restarted audit export wrote no bundle")
        covered = max(int(str(f["last_seq"] or 0)) for f in new)
        if covered < head:
            raise CrashCheckFailed(
                f"{where}: records up to {head} held, the export ends at {covered}: records lost"
            )

    def _next_bundle(self, where: str) -> Exported:
        bundle = self.world.pending()
        if bundle is None:
            self.world.mutate()
            gw = str(self.world.pair.gw)
            self.run("gateway", "export", "--home", gw, "--to", str(self.world.out))
            self.world.collect_exports(where)
            bundle = self.world.pending()
        assert bundle is not None
        return bundle

    def _count(self, kind: str, killed: bool, proc: subprocess.Popen[bytes]) -> None:
        if killed:
            self.killed[kind] += 1
            return
        self.finished[kind] += 1  # it beat the kill: must have succeeded
        if proc.returncode != 0:
            raise CrashCheckFailed(f"an unkilled {kind} exited {proc.returncode}")

    # -- the daemon ----------------------------------------------------------------------------

    def start_daemon(self, stage: str | None = None) -> None:
        if self.daemon is not None:
            return
        self.notified = Notifications(self.logs / f"{self.runs + 1:05d}-agent-run.notify")
        self.daemon = daemon = self.spawn(
            "agent",
            "run",
            "--home",
            str(self.world.pair.ag),
            stage=stage,
            notify=self.notified.path,
        )
        notified = self.notified
        threading.Thread(
            target=lambda: notified.add({"EXITED": str(daemon.wait())}), daemon=True
        ).start()
        self._wait_notified(lambda m: m.get("READY") == "1", "READY=1")

    def stop_daemon(self) -> None:
        if self.daemon is None:
            return
        self.daemon.send_signal(signal.SIGTERM)
        status = self.daemon.wait(timeout=EVENT_TIMEOUT)
        self._forget_daemon()
        if status != 0:
            raise CrashCheckFailed(f"relay agent run exited {status} on SIGTERM")

    def drop(self, bundle: Exported) -> None:
        """Put a bundle into the inbox the way a transport does: a hidden copy, then a rename."""
        inbox = self.world.pair.root / "inbox"
        temp = inbox / f".{bundle.copy.name}.part"
        temp.write_bytes(bundle.copy.read_bytes())
        temp.rename(inbox / bundle.copy.name)

    def wait_handled(self, bundle: Exported) -> None:
        """Wait for the daemon's event saying it applied the file (or found it applied)."""
        name = f'"file": {json.dumps(bundle.copy.name)}'

        def handled(message: dict[str, str]) -> bool:
            event = message.get("RELAY_EVENT", "")
            return event.startswith(("bundle.applied ", "bundle.duplicate ")) and name in event

        self._wait_notified(handled, f"bundle.applied or bundle.duplicate of {name}")

    def _wait_notified(self, wanted: Callable[[dict[str, str]], bool], what: str) -> None:
        """Block until the daemon notifies a message ``wanted`` accepts (or exits)."""
        assert self.notified is not None
        found = self.notified.wait_for(
            lambda ms: next((m for m in ms if wanted(m) or "EXITED" in m), None), EVENT_TIMEOUT
        )
        if found is None:
            raise CrashCheckFailed(f"relay agent run: no {what}")
        if "EXITED" in found and not wanted(found):
            raise CrashCheckFailed(f"relay agent run exited {found['EXITED']}")

    def _forget_daemon(self) -> None:
        self.daemon = None
        if self.notified is not None:
            self.notified.close()
            self.notified = None

    # -- the whole run -----------------------------------------------------------------------

    def finish(self) -> None:
        """Apply whatever is still pending, then the end-of-run invariants."""
        self.stop_daemon()
        while (bundle := self.world.pending()) is not None:
            self.run("agent", "import", "--home", str(self.world.pair.ag), str(bundle.copy))
            if not self.world.check_agent("drain", bundle):
                raise CrashCheckFailed(f"drain: seq {bundle.seq} not applied")
        self.world.check_all_applied_once("end of run")
        self.world.gateway_records("end of run")


def run_points(
    root: Path, seed: int, points: int, secrets: int, stage_share: int = STAGE_SHARE
) -> Harness:
    """Make a world under ``root`` and run ``points`` kill points on it (kinds in turn)."""
    rng = random.Random(seed)
    world = make_world(root / "world", rng, secrets)
    logs = root / "logs"
    logs.mkdir()
    harness = Harness(world, rng, logs, stage_share=stage_share)
    try:
        harness.calibrate()
        for index in range(points):
            kind = KINDS[index % len(KINDS)]
            where = f"seed {seed}, kill point {index + 1} ({kind})"
            getattr(harness, f"kill_{kind}")(where)
        harness.finish()
    finally:
        if harness.daemon is not None:
            harness.daemon.kill()
            harness.daemon.wait()
    return harness


def summary(harness: Harness, seed: int, took: float) -> str:
    total = sum(harness.killed.values())
    return (
        f"seed {seed}: {total} processes killed {dict(harness.killed)}, "
        f"{sum(harness.finished.values())} finished before their kill {dict(harness.finished)}, "
        f"{dict(harness.outcomes)}, {len(harness.world.exported)} bundles exported and applied "
        f"exactly once, {harness.world.temps_left} hidden temp files left by kills, {took:.0f} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=210, help="kill points (default 210)")
    parser.add_argument("--secrets", type=int, default=5000, help="secrets per bundle")
    parser.add_argument("--seed", type=int, default=None, help="RNG seed (default: random)")
    parser.add_argument("--jobs", type=int, default=1, help="worlds run side by side")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    if args.jobs > 1:
        return run_jobs(seed, args.points, args.secrets, args.jobs)
    print(f"crash harness: seed {seed} ({args.points} kill points, {args.secrets} secrets)")
    sys.stdout.flush()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="relay-crash-") as root:
        try:
            harness = run_points(Path(root), seed, args.points, args.secrets)
        except CrashCheckFailed as exc:
            print(f"FAILED (reproduce with --seed {seed}): {exc}")
            return 1
    print(summary(harness, seed, time.monotonic() - started))
    return 0


def run_jobs(seed: int, points: int, secrets: int, jobs: int) -> int:
    """``jobs`` single runs as child processes, seeds ``seed + i``; 1 if any failed."""
    shares = [points // jobs + (1 if i < points % jobs else 0) for i in range(jobs)]
    print(f"crash harness: {jobs} jobs, seeds {seed}..{seed + jobs - 1}, {points} kill points")
    sys.stdout.flush()
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.crash.harness",
                "--points",
                str(share),
                "--secrets",
                str(secrets),
                "--seed",
                str(seed + i),
            ]
        )
        for i, share in enumerate(shares)
    ]
    try:
        statuses = [child.wait() for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
                child.wait()
    return 1 if any(statuses) else 0


if __name__ == "__main__":
    sys.exit(main())
