"""``relay gateway run``: scheduled exports, a bundle every period even when nothing changed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from tests.agent_daemon import Notifications
from tests.conftest import Pair


def test_scheduled_exports_are_heartbeats_and_stop_on_sigterm(pair: Pair) -> None:
    pair.put("db/pw", b"v1")
    pair.gateway("grant", "plant7", "db/*")
    assert "not_configured" in pair.gateway("run").err
    pair.gateway("config", "set", "export.to", str(pair.out))
    pair.gateway("config", "set", "export.every", "1s")
    back = pair.root / "audit-back"
    pair.gateway("config", "set", "import.from", str(back))
    pair.gateway("config", "set", "import.delete_after", "true")
    assert pair.agent("audit", "export", "--to", str(back)).status == 0
    notified = Notifications(pair.root / "gateway.notify")
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay", "gateway", "run", "--home", str(pair.gw)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "NOTIFY_SOCKET": str(notified.path)},
    )
    try:  # three periods done, as the gateway tells its service manager
        assert notified.wait_for(
            lambda ms: any(m.get("RELAY_PERIOD") == "3" for m in ms), timeout=60
        ), "no third period"
        assert notified.messages[0]["READY"] == "1"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        notified.close()
    assert proc.returncode == 0, err
    assert notified.messages[-1]["STOPPING"] == "1"
    bundles = sorted(pair.out.glob("*.bundle"))
    assert len(bundles) >= 3  # nothing changed, yet a bundle every period
    imported = pair.agent("import", str(pair.out))
    assert imported.status == 0, imported.err
    assert pair.get("db/pw").stdout == b"v1\n"
    own = pair.gateway("audit", "--own").out
    assert "gateway.started" in own
    assert "gateway.stopped" in own
    # the return stream was picked up each period, acknowledged, and cleaned up
    assert list(back.iterdir()) == []
    assert pair.gateway("audit", "verify").status == 0
    assert json.loads(pair.agent("status", "--json").out)["audit_acked"] == 2  # both exported


def test_the_daemon_sleeps_to_the_moment_a_period_or_rotation_starts(pair: Pair) -> None:
    """From the clock, not the whole second: a wait of ``next - int(now)`` started each period
    up to a second late."""
    from outer_gateway.store import GatewayStore
    from relay.cli.gateway_schedule import ScheduledRotations
    from relay.home import Home

    pair.put("db/pw", b"v1")
    home = Home.open(pair.gw, "gateway")
    store = GatewayStore.open(home)
    rotations = ScheduledRotations(home, store)
    try:
        assert rotations.wait(1_000_000_000.75, 1_000_000_010) == 9.25
        assert rotations.wait(1_000_000_009.875, 1_000_000_010) == 0.125
        # Due already (a rotation that failed and stays due): once a second, not a spin.
        assert rotations.wait(1_000_000_010.5, 1_000_000_010) == 1.0
        assert pair.gateway("policy", "set", "db/**", "--rotate-every", "1d").status == 0
        rotations.run_due(1_000_000_000)  # the policy's job, first due a day after the secret
        due = rotations.schedule.next_due()
        assert due is not None
        assert rotations.wait(due - 0.5, due + 100) == 0.5
    finally:
        rotations.close()
        store.close()


def test_a_once_pass_that_cannot_write_fails_with_the_errors_status(pair: Pair) -> None:
    """``--once`` serves a cron job or a timer: a failed export is its exit status (the daemon
    reports it and retries next period), one line, no traceback."""
    pair.put("db/pw", b"v1")
    pair.gateway("grant", "plant7", "db/*")
    blocker = pair.root / "a-file"
    blocker.write_bytes(b"")
    pair.gateway("config", "set", "export.to", str(blocker / "out"))  # under a regular file
    pair.gateway("config", "set", "export.every", "1d")
    done = pair.gateway("run", "--once")
    assert done.status == 3, done.err
    assert done.err.strip().splitlines() == [
        f"relay: error: transport_failed: cannot create folder {blocker / 'out'}: Not a directory"
    ]
