"""Per-file isolation (issue 9): an unexpected exception while handling one file is that file's
``malformed`` rejection (quarantined, audited) and the loop goes on; repeated rejections and
failing scans make the intake ``degraded``."""

from __future__ import annotations

from pathlib import Path

import pytest

from inner_agent.importer import AgentImporter, Outcome
from inner_agent.inbox import Inbox
from inner_agent.intake_health import IntakeHealth
from inner_agent.store import AgentStore
from relay.home import Home
from tests.conftest import Pair
from tests.intake_kit import bad_length_forms


def test_the_inbox_goes_on_after_a_file_whose_handling_raises(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("a.bundle", "b.bundle", "c.bundle"):
        (inbox / name).write_bytes(b"junk " + name.encode())
    now = [0.0]
    handed: list[str] = []
    reports: list[Outcome] = []

    def importer(name: str, data: bytes) -> Outcome:
        handed.append(name)
        if name == "a.bundle":
            raise RecursionError("a bug in a step")
        return Outcome(name, "rejected", "malformed", "junk")

    scanner = Inbox([inbox], importer, reports.append, 1 << 20, settle=0, clock=lambda: now[0])
    scanner.scan()
    assert handed == ["a.bundle", "b.bundle", "c.bundle"]
    assert [(r.name, r.status, r.code) for r in reports] == [
        ("a.bundle", "rejected", "malformed"),
        ("b.bundle", "rejected", "malformed"),
        ("c.bundle", "rejected", "malformed"),
    ]
    scanner.scan()
    assert len(handed) == 3  # judged once per content, the raising one included


def test_every_bad_length_form_reaches_the_importer_once_and_nothing_raises(
    tmp_path: Path,
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    forms = bad_length_forms()
    for form, data in forms.items():
        (inbox / f"{form}.bundle").write_bytes(data)
    now = [0.0]
    handed: list[str] = []

    def importer(name: str, data: bytes) -> Outcome:
        handed.append(name)
        return Outcome(name, "rejected", "malformed", "junk")

    scanner = Inbox(
        [inbox], importer, lambda _o: None, 1 << 20, settle=0, give_up=10, clock=lambda: now[0]
    )
    scanner.scan()
    now[0] += 11  # prefixes of a bundle are judged after the give-up time
    scanner.scan()
    assert sorted(handed) == sorted(f"{form}.bundle" for form in forms)


def test_an_unexpected_failure_inside_the_import_is_a_quarantined_audited_rejection(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inner_agent.audit import AgentAudit

    pair.put("db/pw", b"v")
    pair.gateway("grant", "plant7", "db/*")
    (bundle,) = pair.export()
    home = Home.open(pair.ag, "agent")
    importer = AgentImporter(home, AgentStore.open(home), lambda: 0, AgentAudit(home))

    def broken(*_args: object, **_kwargs: object) -> None:
        raise KeyError("a bug while applying")

    monkeypatch.setattr("inner_agent.store.ReceivingStream.apply", broken)
    outcome = importer.import_bytes(bundle.name, bundle.read_bytes(), listed=True)
    assert (outcome.status, outcome.code) == ("rejected", "malformed")
    assert outcome.quarantined is not None
    assert Path(outcome.quarantined).read_bytes() == bundle.read_bytes()
    records = pair.agent("audit", "--json").out
    assert '"bundle.rejected"' in records and "KeyError" not in records
    monkeypatch.undo()
    assert pair.agent("import", str(bundle)).status == 0  # nothing was written: still new


def test_repeated_rejections_and_failing_scans_degrade_the_intake() -> None:
    now = [0.0]
    health = IntakeHealth(lambda: now[0], repeated=3, window=60)
    assert health.degraded() is None
    health.rejected()
    health.rejected()
    assert health.degraded() is None
    health.rejected()
    assert (health.degraded() or "").startswith("repeated_rejections: 3 in the last 60 s")
    now[0] += 61
    assert health.degraded() is None  # the window moved on
    assert health.scan_failed("RecursionError")
    assert not health.scan_failed("RecursionError")  # still failing: audited once
    assert health.degraded() == "scan_failed: RecursionError"
    health.scan_ok()
    assert health.degraded() is None
    assert health.scan_failures == 2


def test_a_flood_is_audited_one_by_one_up_to_the_budget_then_summarised() -> None:
    from inner_agent.intake_health import RejectionBudget

    now = [0.0]
    budget = RejectionBudget(lambda: now[0], per_window=3, window=60)
    admitted = [budget.admit("malformed") for _ in range(5)] + [budget.admit("bad_signature")]
    assert admitted == [True, True, True, False, False, False]
    assert budget.summary() is None  # the window is still open
    now[0] += 60
    assert budget.summary() == {"malformed": 2, "bad_signature": 1}
    assert budget.summary() is None  # reported once
    assert budget.admit("malformed")  # a new window


def test_a_scan_that_raises_degrades_until_one_succeeds() -> None:
    import threading

    from inner_agent.daemon import InboxWorker

    health = IntakeHealth(lambda: 0.0)
    calls: list[int] = []
    seen_failure, recovered = threading.Event(), threading.Event()

    class Flaky:
        def scan(self, _stop: object) -> float | None:
            calls.append(1)
            if len(calls) == 1:
                raise RecursionError("a bug")
            recovered.set()
            return None

    def failed(what: str) -> None:
        health.scan_failed(what)
        seen_failure.set()

    worker = InboxWorker(Flaky(), idle=60, failed=failed, succeeded=health.scan_ok)  # type: ignore[arg-type]
    worker.start()
    try:
        assert seen_failure.wait(30)
        assert health.degraded() == "scan_failed: RecursionError" or recovered.is_set()
        worker.poke()
        assert recovered.wait(30)
        worker.stop()
        worker.join(30)  # succeeded() runs after the scan returned: joined, it has run
        assert not worker.is_alive()
        assert health.degraded() is None
    finally:
        worker.stop()
