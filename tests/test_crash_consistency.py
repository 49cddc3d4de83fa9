"""Crash consistency, proven on real processes: the short run of the kill harness.

``relay gateway export``, ``relay agent import``, ``relay agent run`` and ``relay agent audit
export`` are SIGKILLed at random
points while they work on bundles of thousands of secrets, restarted, and after every kill the
store must hold the old or the new state (never a mix), the audit chains must verify, no gateway
seq may be used for two bundles, and in the end every bundle is applied exactly once. The long
run (210 kill points) is ``make crash``; a failure prints its seed (``RELAY_CRASH_SEED`` replays
it here).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.crash import rotations
from tests.crash.harness import KINDS, run_points, summary

pytestmark = pytest.mark.slow  # real processes

POINTS = 8  # two of each kind
SECRETS = 2000


def test_kill_harness_short_run(tmp_path: Path) -> None:
    seed = int(os.environ.get("RELAY_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"crash harness seed {seed} (RELAY_CRASH_SEED={seed} reproduces)")
    # Every second point of a kind is a named stage, so each kind is killed at least once.
    harness = run_points(tmp_path, seed, POINTS, SECRETS, stage_share=2)
    print(summary(harness, seed, 0.0))
    assert sum(harness.killed.values()) + sum(harness.finished.values()) == POINTS
    assert set(harness.killed) == set(KINDS), f"seed {seed}: every kind was killed at least once"
    assert harness.world.applied == harness.world.exported


def test_kill_harness_rotations_short_run(tmp_path: Path) -> None:
    """One SIGKILL of each key rotation (gateway key, gateway root, agent key) at a named stage;
    the site keeps receiving after each. The long run is ``make crash``."""
    seed = int(os.environ.get("RELAY_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"rotation crash harness seed {seed} (RELAY_CRASH_SEED={seed} reproduces)")
    site = rotations.run_points(tmp_path, seed, len(rotations.KINDS), 1, calibrate=False)
    print(rotations.summary(site, seed))
    assert set(site.killed) == set(rotations.KINDS), f"seed {seed}: each rotation was killed"
