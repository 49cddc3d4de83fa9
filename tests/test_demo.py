"""``relay demo`` runs the whole loop, the agent service included, and exits 0."""

from __future__ import annotations

import pytest

from tests.conftest import run_process

pytestmark = pytest.mark.slow  # runs the whole demo, with a service


def test_demo_exits_0_and_reads_over_http() -> None:
    result = run_process("demo")
    assert result.status == 0, result.err
    assert "readable over HTTP" in result.out
    assert "pending version 3 is visible beforehand" in result.out
    assert "switched to version 3 with no new bundle" in result.out
    assert "every step worked" in result.out
    assert "build step sees DB_PASSWORD (" in result.out
    assert "legacy.conf: mode 0600" in result.out
