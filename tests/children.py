"""The environment of a ``relay`` child process that a test or a benchmark starts."""

from __future__ import annotations

import os


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without ``RELAY_HOME`` and ``RELAY_PASSPHRASE`` (the caller names the
    child's home and passphrase itself), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("RELAY_HOME", "RELAY_PASSPHRASE")}
    env.update(extra or {})
    return env
