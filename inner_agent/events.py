"""The agent's one audit hook: every service event goes through :func:`record`.

Event types: ``agent.started``, ``agent.stopped``, ``agent.stale`` (once per stale period;
an agent that never imported is stale), ``agent.fresh``, ``bundle.applied``,
``bundle.rejected``, ``bundle.duplicate``, ``bundle.skipped``, ``secret.read`` and
``secret.denied`` (fields ``path``, ``app``, ``reason``), ``token.issued`` (``app``,
``client_id``) and ``token.denied`` (``client_id`` only when the value is shaped like one),
and ``unauthenticated.denied``: denials no app is behind are sampled and counted per interval
(:mod:`inner_agent.denials`), never recorded one by one; ``secret.activated`` (a pending
version became current: ``path``, ``version``, ``replaced``). ``relay agent app add|rm`` record
``app.added`` and ``app.removed`` themselves.

Fields follow the audit chain's rules (snake_case names, scalar values, ``agent`` reserved) and
never carry a secret value: a ``bytes`` field is refused at the call. Events are logged to stderr
as one JSON object per line under the ``relay.events`` logger; ``relay agent run`` also connects
them to the audit chain (:class:`inner_agent.audit_writer.AuditWriter`, through
:func:`set_sink`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

from relay.audit.record import check_fields, check_type

Scalar = str | int | float | bool | None
Sink = Callable[[str, dict[str, Scalar]], None]

_log = logging.getLogger("relay.events")
_lock = threading.Lock()


def log_event(event_type: str, fields: dict[str, Scalar]) -> None:
    """The stderr line of one event (the default sink; the audit sink calls it too)."""
    _log.info("event %s %s", event_type, json.dumps(fields, sort_keys=True))


_sink: Sink = log_event


def set_sink(sink: Sink | None) -> None:
    """Send events to ``sink`` (the audit chain); ``None`` restores the stderr log."""
    global _sink  # noqa: PLW0603 - one process-wide hook, by design
    with _lock:
        _sink = sink or log_event


_subscribers: list[Sink] = []


def subscribe(listener: Sink) -> None:
    """Also call ``listener`` with every event after it was recorded (change hooks subscribe
    to ``secret.activated`` and ``secret.rotated``). A failing listener is logged, not raised."""
    with _lock:
        _subscribers.append(listener)


def unsubscribe(listener: Sink) -> None:
    with _lock:
        if listener in _subscribers:
            _subscribers.remove(listener)


def record(event_type: str, **fields: Scalar) -> None:
    """Record one event. Fields are scalars; bytes (a value, perhaps) are a programming error."""
    check_type(event_type)
    check_fields(fields)  # the audit chain's own rules: scalars, snake_case, sizes
    with _lock:
        sink = _sink
        listeners = list(_subscribers)
    sink(event_type, dict(fields))
    _tell(listeners, event_type, fields)


def recorded_with(event_type: str, **fields: Scalar) -> None:
    """An event already chained in the transaction it reports (an applied bundle): logged and
    told to the listeners, not recorded a second time."""
    log_event(event_type, dict(fields))
    with _lock:
        listeners = list(_subscribers)
    _tell(listeners, event_type, fields)


def _tell(listeners: list[Sink], event_type: str, fields: dict[str, Scalar]) -> None:
    for listener in listeners:
        try:
            listener(event_type, dict(fields))
        except Exception as exc:  # a hook must not break the service; never log values
            _log.error("event listener failed on %s: %s", event_type, type(exc).__name__)
