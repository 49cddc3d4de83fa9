"""The example alert rules of docs/monitoring.md pass ``promtool check rules`` (Debian's
prometheus package; .ci/run installs it) and name only metrics the agent exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real processes, servers or stores: seconds each

RULES = Path(__file__).parent.parent / "deploy" / "prometheus" / "relay-rules.yml"


def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 9 rules found" in done.stdout


def test_the_rules_use_metrics_the_agent_exports() -> None:
    from inner_agent.metrics import AgentMetrics, Snapshot

    metrics = AgentMetrics(lambda: Snapshot(1, 0, 10.0, False, 0))
    metrics.rejected.labels(reason="rollback").inc()
    metrics.requests.labels(status="200").inc()
    exported = set(re.findall(r"^(relay_[a-z0-9_]+)", metrics.render().decode(), re.M))
    used = set(re.findall(r"\b(relay_[a-z0-9_]+)\b", RULES.read_text())) - {"relay_doctor_status"}
    assert used <= exported, used - exported
