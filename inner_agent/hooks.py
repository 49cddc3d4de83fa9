"""``[[hooks]]``: actions run by ``relay agent run`` when secrets they watch change.

One thread runs every hook, one at a time, in the order of ``relay.toml``. It is woken by each
applied import (and checks the store every ``poll`` seconds for imports made by other
processes); it then waits until imports stop arriving for the hooks' ``debounce`` time, so two
imports in quick succession make one run. A hook acts when the ``path@version`` set of the
secrets its patterns match differs from the set it last acted on, which is persisted in
``HOME/hooks.state.json`` (paths and versions only) once the action succeeded. So a change that
arrived while the agent was down, or an agent killed between a render and the hook that reloads
it, is acted on at the first pass after the next start. A render hook also acts at that first
pass when its output file is missing or differs from what the current secrets render.

A failed attempt (non-zero exit, time limit, refused secret, missing pid file…) is audited as
``hook.failed`` with a reason code and retried after ``backoff``, doubled each time, up to
``retries`` more times (then ``hook.gave_up``; the next change or start tries again). Nothing a
hook does can stop the agent. Audit records carry the hook's name, action, changed paths and
versions, durations and output sizes: never values and never the output itself. Each attempt
also travels back to the gateway (``report``: :mod:`inner_agent.hook_reports`), tied to the
``path@version`` that set it off, for ``relay gateway rotation status``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from inner_agent.consume_config import HookSpec
from inner_agent.hook_actions import (
    ActionResult,
    render_action,
    run_command,
    send_signal,
    template_text,
)
from inner_agent.hook_reports import Report
from inner_agent.secret_source import SecretSource
from relay.errors import RelayError
from relay.paths import matches_any

STATE_FILE = "hooks.state.json"
POLL_SECONDS = 2.0
MAX_DEBOUNCE_ROUNDS = 20  # a steady stream of imports still gets its hooks run

_log = logging.getLogger("relay.hooks")
Record = Callable[..., None]
Versions = Callable[[], dict[str, int]]


class HookState:
    """What each hook last acted on: sorted ``path@version`` lists, in a 0600 JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._acted: dict[str, list[str]] = {}
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(doc, dict):
                self._acted = {str(k): [str(i) for i in v] for k, v in doc.items()}
        except (OSError, ValueError, TypeError):
            self._acted = {}  # missing or damaged: every hook acts once more, which is safe

    def get(self, name: str) -> frozenset[str] | None:
        items = self._acted.get(name)
        return None if items is None else frozenset(items)

    def set(self, name: str, items: frozenset[str]) -> None:
        from inner_agent.render import write_if_changed

        self._acted[name] = sorted(items)
        text = json.dumps(self._acted, sort_keys=True, indent=1) + "\n"
        write_if_changed(self.path, text.encode("utf-8"), 0o600)


@dataclass
class _Retry:
    attempts: int
    at: float


class HookRunner(threading.Thread):
    """Runs the hooks of one agent service."""

    def __init__(
        self,
        hooks: list[HookSpec],
        state: HookState,
        versions: Versions,
        source: SecretSource,
        record: Record,
        poll: float = POLL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        report: Report | None = None,
    ) -> None:
        super().__init__(name="relay-hooks", daemon=True)
        self.hooks, self.state, self.versions = hooks, state, versions
        self.source, self.record, self.poll, self.clock = source, record, poll, clock
        self.report = report  # each attempt travels back (inner_agent/hook_reports.py)
        self.debounce = max((h.debounce for h in hooks), default=0.0)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._retries: dict[str, _Retry] = {}
        self._gave_up: dict[str, frozenset[str]] = {}  # waits for the next change or start
        self._seen: dict[str, int] | None = None

    def notify(self) -> None:
        """An import was applied: look again (after the debounce)."""
        self._wake.set()

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        self._wake.set()
        self.join(timeout)

    def run(self) -> None:
        self._guarded_pass(startup=True)
        _log.info("hooks: first pass done")
        while not self._stopping.is_set():
            woke = self._wake.wait(self._next_wait())
            if self._stopping.is_set():
                return
            if woke or self._changed_since_seen():
                self._settle()  # imports by other processes are debounced too
            self._guarded_pass(startup=False)

    def _changed_since_seen(self) -> bool:
        try:
            return self.versions() != self._seen
        except Exception:  # reported by the pass itself
            return False

    def _next_wait(self) -> float:
        due = [r.at - self.clock() for r in self._retries.values()]
        return max(0.01, min([self.poll, *due]))

    def _settle(self) -> None:
        """Wait until no import arrived for ``debounce`` seconds."""
        for _ in range(MAX_DEBOUNCE_ROUNDS):
            self._wake.clear()
            if not self._wake.wait(self.debounce) or self._stopping.is_set():
                return

    def _guarded_pass(self, startup: bool) -> None:
        try:
            current = self.versions()
        except Exception as exc:  # the store is busy or gone: try again at the next wake-up
            _log.warning("hooks: cannot read versions: %s", type(exc).__name__)
            return
        if not startup and current == self._seen and not self._due_retries():
            return
        self._seen = current
        for hook in self.hooks:
            if self._stopping.is_set():
                return
            try:
                self._consider(hook, current, startup)
            except Exception as exc:  # a bug in one hook must not stop the others or the agent
                self._failed(hook, None, f"internal_{type(exc).__name__}", None)

    def _due_retries(self) -> bool:
        now = self.clock()
        return any(r.at <= now for r in self._retries.values())

    def _consider(self, hook: HookSpec, current: dict[str, int], startup: bool) -> None:
        matching = frozenset(
            f"{p}@{v}" for p, v in current.items() if matches_any(list(hook.paths), p)
        )
        last = self.state.get(hook.name)
        retry = self._retries.get(hook.name)
        if retry is not None and retry.at > self.clock():
            return
        if self._gave_up.get(hook.name) == matching:
            return
        same = matching == last
        if same and retry is None and not (startup and hook.action == "render"):
            return
        if last is None and not matching and hook.action != "render":
            self.state.set(hook.name, matching)  # nothing to act on yet
            return
        result, acted = self._act(hook, matching, last)
        if self.report is not None:
            self.report(hook, matching, last, result)
        if not result.ok:
            self._failed(hook, matching, result.reason or "failed", result)
            return
        self._retries.pop(hook.name, None)
        self._gave_up.pop(hook.name, None)
        self.state.set(hook.name, matching)
        if acted or not same:
            self.record(
                "hook.ran",
                hook=hook.name,
                action=hook.action,
                changed=_changed(matching, last),
                startup=startup,
                seconds=round(result.seconds, 3),
                output_bytes=result.output_bytes,
            )

    def _act(
        self, hook: HookSpec, matching: frozenset[str], last: frozenset[str] | None
    ) -> tuple[ActionResult, bool]:
        if hook.action == "render":
            from inner_agent.render import render_template

            started = time.monotonic()
            try:
                rendered = render_template(template_text(hook.template), self.source)
            except RelayError as exc:
                return ActionResult(exc.code, time.monotonic() - started), False
            return render_action(hook, rendered.content)
        if hook.action == "signal":
            return send_signal(hook), True
        argv = hook.argv if hook.action == "run" else ("systemctl", *hook.argv)
        variables = {
            "RELAY_HOOK": hook.name,
            "RELAY_PATHS": " ".join(sorted(matching)),
            "RELAY_CHANGED": _changed(matching, last),
        }
        return run_command(hook, argv, variables), True

    def _failed(
        self,
        hook: HookSpec,
        matching: frozenset[str] | None,
        reason: str,
        result: ActionResult | None,
    ) -> None:
        previous = self._retries.get(hook.name)
        attempts = 1 if previous is None else previous.attempts + 1
        self.record(
            "hook.failed",
            hook=hook.name,
            action=hook.action,
            reason=reason[:64],
            attempt=attempts,
            output_bytes=result.output_bytes if result else 0,
        )
        if result is not None and result.output:
            shown = result.output[:2048].decode("utf-8", "replace")
            _log.warning("hook %s failed (%s); output begins: %r", hook.name, reason, shown)
        if attempts > hook.retries:
            self._retries.pop(hook.name, None)
            if matching is not None:
                self._gave_up[hook.name] = matching
            self.record("hook.gave_up", hook=hook.name, action=hook.action, attempts=attempts)
            return
        delay = hook.backoff * (2 ** (attempts - 1))
        self._retries[hook.name] = _Retry(attempts, self.clock() + delay)


def _changed(matching: frozenset[str], last: frozenset[str] | None) -> str:
    """``path@version`` of what is new since ``last``, and ``path@removed`` of what is gone."""
    before = last or frozenset()
    added = sorted(matching - before)
    now_paths = {item.rsplit("@", 1)[0] for item in matching}
    gone = sorted({item.rsplit("@", 1)[0] for item in before} - now_paths)
    return " ".join([*added, *(f"{p}@removed" for p in gone)])
