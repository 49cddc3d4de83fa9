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

from relay.codes import BAD_CONFIG, BAD_VALUE, UNKNOWN_SETTING
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
        raise UsageError(f"{text!r} is not a whole number", code=BAD_VALUE) from None
    if value < 0:
        raise UsageError(f"{text!r} must not be negative", code=BAD_VALUE)
    return value


def _text(text: str) -> str:
    return text


def _store_url(text: str) -> str:
    if text and not text.startswith(("postgresql://", "postgresql+psycopg://")):
        raise UsageError("gateway.store_url must be a postgresql+psycopg:// URL", code=BAD_VALUE)
    return text.replace("postgresql://", "postgresql+psycopg://", 1)


def _optional_listen(text: str) -> str:
    """Empty (off) or ``HOST:PORT``."""
    return _listen(text) if text.strip() else ""


def _ratio(text: str) -> str:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{text!r} is not a number", code=BAD_VALUE) from None
    if not 0 < value <= 4:
        raise UsageError("the FEC overhead must be above 0 and at most 4", code=BAD_VALUE)
    return text


def _duration(text: str) -> str:
    parse_duration(text)
    return text


def _optional_duration(text: str) -> str:
    """A duration, or the empty string for "not set"."""
    return _duration(text) if text.strip() else ""


def _not_settable(text: str) -> Any:
    raise UsageError("edit relay.toml: [[rotation.executor]] tables", code=BAD_VALUE)


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise UsageError(f"{text!r} is not true or false", code=BAD_VALUE)


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
    """Empty (off) or an absolute path: a relative one would depend on the caller's cwd."""
    text = text.strip()
    if text and not Path(text).expanduser().is_absolute():
        raise UsageError(f"{text!r} must be an absolute path (or empty for off)", code=BAD_VALUE)
    return str(Path(text).expanduser()) if text else ""


def _syslog_url(text: str) -> str:
    """Empty (off), ``udp://host:port``, ``tcp://host:port`` or ``unix:///path``."""
    from relay.audit.sinks import parse_syslog_url

    text = text.strip()
    if text:
        try:
            parse_syslog_url(text)
        except ValueError as exc:
            raise UsageError(str(exc), code=BAD_VALUE) from None
    return text


def _syslog_format(text: str) -> str:
    text = text.strip().lower()
    if text not in ("rfc5424", "cef"):
        raise UsageError(f"{text!r}: syslog format is rfc5424 or cef", code=BAD_VALUE)
    return text


BOTH = frozenset({"gateway", "agent", "hop"})
GATEWAY = frozenset({"gateway"})
AGENT = frozenset({"agent"})

SETTINGS: dict[str, Setting] = {
    "limits.max_bundle_bytes": Setting(
        BOTH, _int, 256 * 1024 * 1024, "largest bundle file accepted or written"
    ),
    "limits.max_secret_bytes": Setting(BOTH, _int, 1024 * 1024, "largest single secret value"),
    "limits.max_entries": Setting(BOTH, _int, 1_000_000, "most secrets in one bundle"),
    "export.valid_for": Setting(GATEWAY, _duration, "7d", "default validity of exported bundles"),
    "keys.cert_valid_for": Setting(
        GATEWAY, _duration, "90d", "validity of a signing key's certificate (root-signed)"
    ),
    "keys.retired_open_for": Setting(
        GATEWAY,
        _duration,
        "30d",
        "how long the return stream sealed to a retired signing key is still opened",
    ),
    "export.every": Setting(GATEWAY, _duration, "1h", "period of `relay gateway run` exports"),
    "export.full_every": Setting(
        GATEWAY,
        _int,
        24,
        "a full bundle after this many to an agent (deltas in between, on acknowledged bases)",
    ),
    "export.to": Setting(
        GATEWAY, _text, "", "destination of `relay gateway run`: folder, sftp://, udp://"
    ),
    "import.from": Setting(
        GATEWAY, _text, "", "where `relay gateway run` picks up audit bundles (comma-separated)"
    ),
    "import.delete_after": Setting(
        GATEWAY, _bool, False, "remove imported audit bundles from import.from"
    ),
    "audit.valid_for": Setting(AGENT, _duration, "90d", "validity of exported audit bundles"),
    "audit.max_silence": Setting(
        GATEWAY, _duration, "2d", "`audit verify` fails for an agent not heard from for longer"
    ),
    "gateway.store_url": Setting(
        GATEWAY, _store_url, "", "database URL for a fleet (postgresql://…); empty = SQLCipher"
    ),
    "diode.fec_overhead": Setting(
        BOTH, _ratio, "0.25", "share of parity blocks sent over udp:// (0.25 covers ~10% loss)"
    ),
    "diode.rate": Setting(BOTH, _int, 20_000_000, "udp:// sending rate limit, bytes per second"),
    "diode.repeat": Setting(BOTH, _int, 1, "udp:// passes per bundle (carousel)"),
    "diode.listen": Setting(
        AGENT, _optional_listen, "", "HOST:PORT where `relay agent run` receives from a diode"
    ),
    "import.quarantine_bytes": Setting(
        BOTH, _int, 1024 * 1024 * 1024, "total size kept in quarantine before the oldest go"
    ),
    "audit.jsonl": Setting(
        BOTH, _optional_path, "", "append audit records as JSON lines to this file (empty: off)"
    ),
    "audit.syslog": Setting(
        BOTH, _syslog_url, "", "send audit records to udp://h:p, tcp://h:p or unix:///dev/log"
    ),
    "audit.syslog_format": Setting(BOTH, _syslog_format, "rfc5424", "rfc5424 or cef"),
    "sftp.identity_file": Setting(
        BOTH, _text, "", "private key for sftp:// logins (empty: none; see docs/sftp.md)"
    ),
    "sftp.known_hosts": Setting(
        BOTH, _text, "", "known_hosts file pinning sftp:// host keys (required for sftp://)"
    ),
    # -- the agent service (`relay agent run`) ----------------------------------------------
    "agent.inbox": Setting(AGENT, _list, [], "folders watched for bundles (comma-separated)"),
    "agent.rescan_every": Setting(
        AGENT, _duration, "30s", "full rescan of the inbox (missed events, media mounted later)"
    ),
    "agent.max_staleness": Setting(
        AGENT, _optional_duration, "", "age of the newest bundle past which the agent is stale"
    ),
    "agent.clock_skew": Setting(
        AGENT, _duration, "5m", "leeway for bundle expiry, certificate validity and activates_at"
    ),
    "hop.clock_skew": Setting(
        frozenset({"hop"}), _duration, "5m", "leeway for bundle expiry and certificate validity"
    ),
    "hop.clock_ahead_limit": Setting(
        frozenset({"hop"}),
        _duration,
        "30d",
        "clock past the newest forwarded bundle by more: far ahead",
    ),
    "agent.clock_ahead_limit": Setting(
        AGENT, _duration, "30d", "clock past the newest signed bundle time by more: far ahead"
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
    "api.read_timeout": Setting(
        AGENT, _duration, "10s", "time a client has to send a whole request (headers and body)"
    ),
    "rotation.expiry_window": Setting(
        AGENT, _optional_duration, "", "request rotation of a secret this long before it expires"
    ),
    "rotation.executor": Setting(
        AGENT, _not_settable, [], "[[rotation.executor]] tables in relay.toml (docs/rotation.md)"
    ),
    "rotation.overlap": Setting(
        GATEWAY, _duration, "1h", "how long a replaced version stays `previous` (no policy)"
    ),
}


def get_setting_def(key: str, side: str) -> Setting:
    """The declaration of ``key`` for ``side``; ``UsageError`` if there is none."""
    setting = SETTINGS.get(key)
    if setting is None or side not in setting.sides:
        known = ", ".join(sorted(k for k, s in SETTINGS.items() if side in s.sides))
        raise UsageError(f"unknown setting {key!r}; known: {known}", code=UNKNOWN_SETTING)
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
                raise UsageError(f"{path} is not valid TOML: {exc}", code=BAD_CONFIG) from None
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
        import tomli_w  # only writing needs it

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
