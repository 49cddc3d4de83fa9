"""Where a home is when no ``--home`` or ``RELAY_HOME`` is given.

- A system service: ``/var/lib/relay/agent`` or ``/var/lib/relay/gateway`` (systemd's
  ``StateDirectory=relay/agent``), used when that folder exists or when running as root.
- A user: ``$XDG_DATA_HOME/relay/agent`` (``~/.local/share/relay/agent`` when unset).

``--home`` and ``RELAY_HOME`` always win. Commands that create a home print which one they used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SYSTEM_ROOT = Path("/var/lib/relay")
SIDES = ("agent", "gateway")


def default_home(
    side: str,
    *,
    euid: int | None = None,
    environ: Mapping[str, str] | None = None,
    system_root: Path | None = None,
) -> Path:
    """The default home of ``side`` for this process (see the module docstring)."""
    env = os.environ if environ is None else environ
    system = (SYSTEM_ROOT if system_root is None else system_root) / side
    if system.is_dir() or (os.geteuid() if euid is None else euid) == 0:
        return system
    data = env.get("XDG_DATA_HOME", "")
    if not data or not Path(data).is_absolute():  # the XDG spec: ignore a relative value
        data = str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return Path(data) / "relay" / side
