"""The caps on what a receiver accepts: one frozen object, built from the settings once and
passed wherever bytes enter (the import loop, the inbox, the hop, the pure pipeline).

Example::

    limits = Limits.from_config(home.config)
    received = receive_secrets(data, trust, keys, streams, now, limits)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

DEFAULT_MAX_BUNDLE_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_SECRET_BYTES = 1024 * 1024
DEFAULT_MAX_ENTRIES = 1_000_000
DEFAULT_QUARANTINE_BYTES = 1024 * 1024 * 1024


class _Settings(Protocol):
    def get(self, key: str) -> object: ...


@dataclass(frozen=True)
class Limits:
    """Hard caps, checked before the bytes they bound are read or decoded.

    - ``max_bundle_bytes`` (``limits.max_bundle_bytes``): largest bundle file read at all;
    - ``max_secret_bytes`` (``limits.max_secret_bytes``): largest secret value in a payload;
    - ``max_entries`` (``limits.max_entries``): most rows (secrets, tombstones, audit records)
      in one payload;
    - ``quarantine_bytes`` (``import.quarantine_bytes``): total size of rejected copies kept.
    """

    max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES
    max_secret_bytes: int = DEFAULT_MAX_SECRET_BYTES
    max_entries: int = DEFAULT_MAX_ENTRIES
    quarantine_bytes: int = DEFAULT_QUARANTINE_BYTES

    def __post_init__(self) -> None:
        for name in ("max_bundle_bytes", "max_secret_bytes", "max_entries", "quarantine_bytes"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"limit {name} must be a non-negative integer")

    @classmethod
    def from_config(cls, config: _Settings) -> Limits:
        """The limits a home's settings declare."""
        return cls(
            max_bundle_bytes=int(str(config.get("limits.max_bundle_bytes"))),
            max_secret_bytes=int(str(config.get("limits.max_secret_bytes"))),
            max_entries=int(str(config.get("limits.max_entries"))),
            quarantine_bytes=int(str(config.get("import.quarantine_bytes"))),
        )
