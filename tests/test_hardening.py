"""Process hardening of the agent service: ``inner_agent.hardening`` on this very process. The
test restores dumpability; the core-size limit, once lowered, cannot be raised again by an
unprivileged process, so the test run goes on without core dumps (harmless)."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest

from inner_agent import hardening


@pytest.fixture
def restored() -> Iterator[None]:
    dumpable = hardening.is_dumpable()
    yield
    if dumpable:
        hardening._prctl(hardening.PR_SET_DUMPABLE, 1)


def test_hardening_disables_core_dumps_and_dumpability(restored: None) -> None:
    hardening._prctl(hardening.PR_SET_DUMPABLE, 1)
    assert hardening.is_dumpable()
    assert hardening.harden_process() is True
    assert resource.getrlimit(resource.RLIMIT_CORE) == (0, 0)
    assert not hardening.is_dumpable()


def test_a_prctl_that_fails_is_reported_not_raised(
    restored: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(hardening, "_prctl", lambda option, arg: -1)
    assert hardening.harden_process() is False
    assert "could not mark the process non-dumpable" in caplog.text
    assert hardening.is_dumpable() is False  # -1 is not "dumpable"
