"""SIEM formats for audit records: JSON lines, RFC 5424 syslog and CEF. Pure: text in, text out.

Each formatter takes the agent id (records do not carry it: a chain belongs to one agent) and a
record, and returns one line without a trailing newline. The exact layouts are in
``docs/audit.md``; the escaping follows RFC 5424 section 6.3.3 (``"``, ``\\`` and ``]`` in a
PARAM-VALUE) and the CEF specification (``|`` and ``\\`` in header fields; ``\\``, ``=``, CR and LF
in extension values).
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime, timedelta

from relay import __version__
from relay.audit.record import AuditRecord, FieldValue, parse_time, record_to_dict

SD_ID = "relay@32473"  # 32473: the IANA example enterprise number (RFC 5612)
APP_NAME = "relay"
FACILITY_LOG_AUDIT = 13
MAX_SYSLOG_VALUE_CHARS = 1024  # keeps one message well under a UDP datagram (32 fields max)
TRUNCATED = "...[truncated]"

SEVERITY_WARNING, SEVERITY_NOTICE, SEVERITY_INFO = 4, 5, 6
_WARNING_WORDS = frozenset({"rejected", "denied", "failed", "conflict", "gap", "tampered"})
_NOTICE_WORDS = frozenset({"changed", "created", "rotated", "deleted", "revoked", "stopped"})
# Syslog severity (0 emergency .. 7 debug) to CEF severity (0 .. 10, higher is worse).
_CEF_SEVERITY = {0: 10, 1: 9, 2: 8, 3: 7, 4: 6, 5: 4, 6: 3, 7: 1}
# Fields with an exact standard CEF key; every other field is sent as relay<CamelCase>.
_CEF_STANDARD_KEYS = {"path": "filePath", "user": "suser", "reason": "reason"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def severity_of(event_type: str) -> int:
    """Syslog severity of an event type, from its last word (``bundle.rejected`` is a warning)."""
    last = event_type.rsplit(".", 1)[-1]
    if last in _WARNING_WORDS:
        return SEVERITY_WARNING
    if last in _NOTICE_WORDS:
        return SEVERITY_NOTICE
    return SEVERITY_INFO


def format_json_line(agent: str, record: AuditRecord) -> str:
    """The record exactly as stored (``fields`` nested) plus ``agent``; sorted keys, UTF-8 text.

    Lossless: drop ``agent`` and ``hash`` and the rest re-hashes to ``hash``, so a SIEM can check
    the chain itself.
    """
    obj = record_to_dict(record)
    obj["agent"] = agent
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def format_listing_line(agent: str, record: AuditRecord) -> str:
    """One line of ``relay agent|gateway audit --json``: :func:`format_json_line`, plus ``path``
    at the top level for secret events (``secret.read``, ``secret.denied``, …), so scripts can
    filter by path without digging into ``fields``. The top-level ``path`` is a copy: drop it too
    before re-hashing."""
    obj = record_to_dict(record)
    obj["agent"] = agent
    path = record.fields.get("path")
    if record.type.startswith("secret.") and isinstance(path, str):
        obj["path"] = path
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def format_rfc5424(
    agent: str,
    record: AuditRecord,
    *,
    hostname: str,
    procid: str = "-",
    facility: int = FACILITY_LOG_AUDIT,
) -> str:
    """One RFC 5424 message: header, one ``[relay@32473 ...]`` SD-ELEMENT, a short MSG.

    SD-PARAMs: ``agent``, ``seq``, ``session_id``, ``prev_hash``, ``hash``, then every field by
    name (sorted; a null field is left out; long strings are cut to
    :data:`MAX_SYSLOG_VALUE_CHARS`).
    """
    params = [_sd_param(name, value) for name, value in _syslog_params(agent, record)]
    structured = f"[{SD_ID} {' '.join(params)}]"
    message = f"{record.type} seq={record.seq}"
    return f"{syslog_header(record, hostname, procid, facility)} {structured} {message}"


def format_cef(agent: str, record: AuditRecord, *, version: str = __version__) -> str:
    """One CEF:0 line. Extension keys: ``rt`` (event time, ms since the epoch),
    ``deviceExternalId`` (agent), ``externalId`` (seq), ``relaySessionId``, ``relayPrevHash``,
    ``relayHash``, then the fields (``path``→``filePath``, ``user``→``suser``,
    ``reason``→``reason``, any other ``snake_name``→``relaySnakeName``).
    """
    severity = _CEF_SEVERITY[severity_of(record.type)]
    header = [
        "CEF:0",
        cef_header_escape("relay"),
        cef_header_escape("relay"),
        cef_header_escape(version),
        cef_header_escape(record.type),
        cef_header_escape(record.type.replace(".", " ").replace("_", " ")),
        str(severity),
    ]
    ext = " ".join(f"{key}={cef_value_escape(value)}" for key, value in _cef_pairs(agent, record))
    return "|".join(header) + "|" + ext


def format_cef_syslog(
    agent: str,
    record: AuditRecord,
    *,
    hostname: str,
    procid: str = "-",
    facility: int = FACILITY_LOG_AUDIT,
    version: str = __version__,
) -> str:
    """A CEF line carried as the MSG of an RFC 5424 message with no structured data."""
    header = syslog_header(record, hostname, procid, facility)
    return f"{header} - {format_cef(agent, record, version=version)}"


def syslog_header(record: AuditRecord, hostname: str, procid: str, facility: int) -> str:
    """``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID`` with MSGID = the event type."""
    if not 0 <= facility <= 23:
        raise ValueError("syslog facility must be 0..23")
    pri = facility * 8 + severity_of(record.type)
    host = _header_token(hostname, 255)
    proc = _header_token(procid, 128)
    return f"<{pri}>1 {record.time} {host} {APP_NAME} {proc} {record.type}"


def sd_escape(value: str) -> str:
    """RFC 5424 PARAM-VALUE escaping: ``\\``, ``"`` and ``]`` get a backslash."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def cef_header_escape(value: str) -> str:
    """CEF header escaping: ``\\`` and ``|`` get a backslash; CR/LF (not allowed) become spaces."""
    escaped = value.replace("\\", "\\\\").replace("|", "\\|")
    return escaped.replace("\r", " ").replace("\n", " ")


def cef_value_escape(value: str) -> str:
    """CEF extension value escaping: ``\\``, ``=`` get a backslash; CR/LF become ``\\r``/``\\n``."""
    escaped = value.replace("\\", "\\\\").replace("=", "\\=")
    return escaped.replace("\r", "\\r").replace("\n", "\\n")


@functools.lru_cache(maxsize=1024)
def cef_key(field_name: str) -> str:
    """The CEF extension key of a record field (injective over snake_case names)."""
    standard = _CEF_STANDARD_KEYS.get(field_name)
    if standard is not None:
        return standard
    return "relay" + "".join(part[:1].upper() + part[1:] for part in field_name.split("_"))


def _syslog_params(agent: str, record: AuditRecord) -> list[tuple[str, str]]:
    params = [
        ("agent", agent),
        ("seq", str(record.seq)),
        ("session_id", record.session_id),
        ("prev_hash", record.prev_hash),
        ("hash", record.hash),
    ]
    return params + _field_texts(record)


def _cef_pairs(agent: str, record: AuditRecord) -> list[tuple[str, str]]:
    millis = (parse_time(record.time) - _EPOCH) // timedelta(milliseconds=1)
    pairs = [
        ("rt", str(millis)),
        ("deviceExternalId", agent),
        ("externalId", str(record.seq)),
        ("relaySessionId", record.session_id),
        ("relayPrevHash", record.prev_hash),
        ("relayHash", record.hash),
    ]
    return pairs + [(cef_key(name), text) for name, text in _field_texts(record)]


def _field_texts(record: AuditRecord) -> list[tuple[str, str]]:
    return [
        (name, _value_text(value))
        for name, value in sorted(record.fields.items())
        if value is not None
    ]


def _value_text(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    if len(text) > MAX_SYSLOG_VALUE_CHARS:
        return text[: MAX_SYSLOG_VALUE_CHARS - len(TRUNCATED)] + TRUNCATED
    return text


def _sd_param(name: str, value: str) -> str:
    return f'{name}="{sd_escape(value)}"'


def _header_token(value: str, limit: int) -> str:
    """A syslog header token: printable US-ASCII without spaces, else ``_``; empty is ``-``."""
    token = "".join(c if 33 <= ord(c) <= 126 else "_" for c in value)[:limit]
    return token or "-"
