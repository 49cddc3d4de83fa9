"""A home's ``relay.toml``: typed settings with defaults, edited by ``config set/get/show``.

Every setting is declared in :data:`SETTINGS` with its side (``gateway``, ``agent`` or both), a
parser that validates the operator's text, and a default. Unknown keys are refused
(``unknown_setting``), so a typo never silently does nothing.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from relay.durations import parse_duration
from relay.errors import UsageError

CONFIG_NAME = "relay.toml"


@dataclass(frozen=True)
class Setting:
    """One setting: where it applies, how to read it, its default and a line of help."""

    sides: frozenset[str]
    parse: Callable[[str], Any]
    default: Any
    help: str


def _int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{text!r} is not a whole number", code="bad_value") from None
    if value < 0:
        raise UsageError(f"{text!r} must not be negative", code="bad_value")
    return value


def _text(text: str) -> str:
    return text


def _store_url(text: str) -> str:
    if text and not text.startswith(("postgresql://", "postgresql+psycopg://")):
        raise UsageError("gateway.store_url must be a postgresql+psycopg:// URL", code="bad_value")
    return text.replace("postgresql://", "postgresql+psycopg://", 1)


def _duration(text: str) -> str:
    parse_duration(text)
    return text


def _optional_duration(text: str) -> str:
    """A duration, or the empty string for "not set"."""
    return _duration(text) if text.strip() else ""


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise UsageError(f"{text!r} is not true or false", code="bad_value")


def _list(text: str) -> list[str]:
    """Comma-separated items, stripped, empties dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _uids(text: str) -> list[int]:
    return [_int(item) for item in _list(text)]


def _patterns(text: str) -> list[str]:
    from relay.paths import check_pattern

    return [check_pattern(item) for item in _list(text)]


def _listen(text: str) -> str:
    """``HOST:PORT`` (an IP literal or ``localhost``; IPv6 in brackets), or ``off``."""
    from relay.netaddr import parse_listen

    if text.strip().lower() == "off":
        return "off"
    parse_listen(text)
    return text.strip()


def _optional_path(text: str) -> str:
    return text.strip()


BOTH = frozenset({"gateway", "agent"})
GATEWAY = frozenset({"gateway"})
AGENT = frozenset({"agent"})

SETTINGS: dict[str, Setting] = {
    "limits.max_bundle_bytes": Setting(
        BOTH, _int, 256 * 1024 * 1024, "largest bundle file accepted or written"
    ),
    "limits.max_secret_bytes": Setting(BOTH, _int, 1024 * 1024, "largest single secret value"),
    "limits.max_entries": Setting(BOTH, _int, 1_000_000, "most secrets in one bundle"),
    "export.valid_for": Setting(GATEWAY, _duration, "7d", "default validity of exported bundles"),
    "gateway.store_url": Setting(
        GATEWAY, _store_url, "", "database URL for a fleet (postgresql://…); empty = SQLCipher"
    ),
    "import.quarantine_bytes": Setting(
        BOTH, _int, 1024 * 1024 * 1024, "total size kept in quarantine before the oldest go"
    ),
    # -- the agent service (`relay agent run`) ----------------------------------------------
    "agent.inbox": Setting(AGENT, _list, [], "folders watched for bundles (comma-separated)"),
    "agent.rescan_every": Setting(
        AGENT, _duration, "30s", "full rescan of the inbox (missed events, media mounted later)"
    ),
    "agent.max_staleness": Setting(
        AGENT, _optional_duration, "", "age of the newest bundle past which the agent is stale"
    ),
    "agent.fail_closed": Setting(
        AGENT, _patterns, [], "secret patterns refused (410 stale) while the agent is stale"
    ),
    "api.listen": Setting(
        AGENT, _listen, "127.0.0.1:8787", "local API address HOST:PORT (loopback), or off"
    ),
    "api.allow_non_loopback": Setting(
        AGENT, _bool, False, "let api.listen use a non-loopback address (exposes the API)"
    ),
    "api.unix_socket": Setting(AGENT, _optional_path, "", "also serve the API on this socket"),
    "api.allowed_uids": Setting(
        AGENT, _uids, [], "uids allowed on the unix socket (comma-separated; empty: its owner)"
    ),
    "api.token_ttl": Setting(AGENT, _duration, "15m", "lifetime of API access tokens"),
}


def get_setting_def(key: str, side: str) -> Setting:
    """The declaration of ``key`` for ``side``; ``UsageError`` if there is none."""
    setting = SETTINGS.get(key)
    if setting is None or side not in setting.sides:
        known = ", ".join(sorted(k for k, s in SETTINGS.items() if side in s.sides))
        raise UsageError(f"unknown setting {key!r}; known: {known}", code="unknown_setting")
    return setting


class Config:
    """The settings of one home, read from and written to its ``relay.toml``."""

    def __init__(self, path: Path, side: str) -> None:
        self.path = path
        self.side = side
        self._values: dict[str, Any] = {}
        if path.exists():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise UsageError(f"{path} is not valid TOML: {exc}", code="bad_config") from None
            self._values = _flatten(data)

    def get(self, key: str) -> Any:
        """The value of ``key``, or its default."""
        setting = get_setting_def(key, self.side)
        return self._values.get(key, setting.default)

    def set(self, key: str, text: str) -> Any:
        """Validate ``text`` for ``key``, store it and save the file; returns the parsed value."""
        value = get_setting_def(key, self.side).parse(text)
        self._values[key] = value
        self.save()
        return value

    def unset(self, key: str) -> None:
        """Return ``key`` to its default."""
        get_setting_def(key, self.side)
        self._values.pop(key, None)
        self.save()

    def items(self) -> list[tuple[str, Any, bool]]:
        """Every setting of this side: ``(key, value, is_default)``."""
        return [
            (key, self._values.get(key, s.default), key not in self._values)
            for key, s in sorted(SETTINGS.items())
            if self.side in s.sides
        ]

    def save(self) -> None:
        from relay.transport.folder import write_atomic

        text = tomli_w.dumps(_nest(self._values))
        write_atomic(self.path.parent, self.path.name, text.encode("utf-8"))


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{full}."))
        else:
            flat[full] = value
    return flat


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in sorted(flat.items()):
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested
