"""The agent's one audit hook: every service event goes through :func:`record`.

Event types: ``agent.started``, ``agent.stopped``, ``agent.stale`` (once per stale period;
an agent that never imported is stale), ``agent.fresh``, ``bundle.applied``,
``bundle.rejected``, ``bundle.duplicate``, ``bundle.skipped``, ``secret.read`` and
``secret.denied`` (fields ``path``, ``app``, ``reason``), ``token.issued`` and ``token.denied``.

Fields are plain scalars (str, int, float, bool, None) and never a secret value: a ``bytes`` field
is refused. Until the audit chain is connected (:func:`set_sink`), events are logged to stderr as
one JSON object per line under the ``relay.events`` logger.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

Scalar = str | int | float | bool | None
Sink = Callable[[str, dict[str, Scalar]], None]

_log = logging.getLogger("relay.events")
_lock = threading.Lock()


def _log_sink(event_type: str, fields: dict[str, Scalar]) -> None:
    _log.info("event %s %s", event_type, json.dumps(fields, sort_keys=True))


_sink: Sink = _log_sink


def set_sink(sink: Sink | None) -> None:
    """Send events to ``sink`` (the audit chain); ``None`` restores the stderr log."""
    global _sink  # noqa: PLW0603 - one process-wide hook, by design
    with _lock:
        _sink = sink or _log_sink


def record(event_type: str, **fields: Scalar) -> None:
    """Record one event. Fields are scalars; bytes (a value, perhaps) are a programming error."""
    for key, value in fields.items():
        if not isinstance(value, str | int | float | bool) and value is not None:
            raise TypeError(f"event field {key!r} must be a scalar, not {type(value).__name__}")
    with _lock:
        sink = _sink
    sink(event_type, dict(fields))
