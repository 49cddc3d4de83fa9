"""SIEM formats, checked with independent parsers written from RFC 5424 and the CEF spec.

The parsers here are also used by ``test_audit_sinks.py`` on what a real rsyslogd received.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.audit.chain import AuditRecord, next_record
from relay.audit.formats import (
    FACILITY_LOG_AUDIT,
    MAX_SYSLOG_VALUE_CHARS,
    cef_key,
    format_cef,
    format_cef_syslog,
    format_json_line,
    format_rfc5424,
    severity_of,
)

NASTY = 'a"b\\c]d|e=f\ng\rh ] x="y" \\] end'
T0 = datetime(2026, 11, 29, 10, 0, 0, 123456, tzinfo=UTC)


# --- independent parsers ----------------------------------------------------------------------


@dataclass
class Syslog5424:
    pri: int
    timestamp: str
    hostname: str
    app: str
    procid: str
    msgid: str
    sd: dict[str, dict[str, str]]
    msg: str


_HEADER = re.compile(r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) ")


def parse_rfc5424(line: str) -> Syslog5424:
    """Parse an RFC 5424 message (section 6), undoing PARAM-VALUE escapes (section 6.3.3)."""
    match = _HEADER.match(line)
    assert match, line
    pos = match.end()
    sd: dict[str, dict[str, str]] = {}
    if line[pos] == "-":
        pos += 1
    else:
        while pos < len(line) and line[pos] == "[":
            pos = _parse_element(line, pos + 1, sd)
    msg = line[pos + 1 :] if pos < len(line) else ""
    assert pos >= len(line) or line[pos] == " "
    pri, ts, host, app, proc, msgid = match.groups()
    return Syslog5424(int(pri), ts, host, app, proc, msgid, sd, msg)


def _parse_element(line: str, pos: int, sd: dict[str, dict[str, str]]) -> int:
    end = min(i for i in (line.find(" ", pos), line.find("]", pos)) if i >= 0)
    params: dict[str, str] = {}
    sd[line[pos:end]] = params
    pos = end
    while line[pos] == " ":
        eq = line.index("=", pos)
        name = line[pos + 1 : eq]
        assert line[eq + 1] == '"'
        value, pos = _read_quoted(line, eq + 2)
        params[name] = value
    assert line[pos] == "]"
    return pos + 1


def _read_quoted(line: str, pos: int) -> tuple[str, int]:
    out: list[str] = []
    while line[pos] != '"':
        if line[pos] == "\\" and line[pos + 1] in '"\\]':
            out.append(line[pos + 1])
            pos += 2
        else:
            assert line[pos] != "]", "unescaped ] in PARAM-VALUE"
            out.append(line[pos])
            pos += 1
    return "".join(out), pos + 1


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """Split a CEF line into its 7 unescaped header fields and its unescaped extension pairs."""
    header: list[str] = []
    current: list[str] = []
    pos = 0
    while len(header) < 7:
        char = line[pos]
        if char == "\\" and line[pos + 1] in "\\|":
            current.append(line[pos + 1])
            pos += 2
            continue
        if char == "|":
            header.append("".join(current))
            current = []
        else:
            current.append(char)
        pos += 1
    return header, _parse_extension(line[pos:])


def _parse_extension(ext: str) -> dict[str, str]:
    equals = [i for i in range(len(ext)) if ext[i] == "=" and not _escaped(ext, i)]
    starts = [ext.rfind(" ", 0, i) + 1 for i in equals]
    pairs: dict[str, str] = {}
    for n, (start, eq) in enumerate(zip(starts, equals, strict=True)):
        end = starts[n + 1] - 1 if n + 1 < len(starts) else len(ext)
        pairs[ext[start:eq]] = _cef_unescape(ext[eq + 1 : end])
    return pairs


def _escaped(text: str, index: int) -> bool:
    backslashes = 0
    while index - backslashes - 1 >= 0 and text[index - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def _cef_unescape(value: str) -> str:
    table = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}
    return re.sub(r"\\(.)", lambda m: table.get(m.group(1), m.group(0)), value, flags=re.S)


# --- helpers ----------------------------------------------------------------------------------


def record(fields: dict[str, object], type_: str = "secret.read") -> AuditRecord:
    return next_record(None, "sess-1", type_, fields, T0, 42)  # type: ignore[arg-type]


# --- JSON lines ------------------------------------------------------------------------------


def test_json_line_is_the_record_plus_agent_and_rehashes() -> None:
    rec = record({"path": "db/é/x", "app": "cron", "n": 3, "ok": True, "none": None})
    obj = json.loads(format_json_line("agent-7", rec))
    assert obj["agent"] == "agent-7"
    assert (obj["seq"], obj["type"], obj["session_id"]) == (1, "secret.read", "sess-1")
    assert obj["time"] == "2026-11-29T10:00:00.123456Z"
    assert obj["fields"]["path"] == "db/é/x"
    del obj["agent"]
    claimed = obj.pop("hash")
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert hashlib.sha256(canonical.encode()).hexdigest() == claimed
    assert "\n" not in format_json_line("a", record({"reason": "x\ny"}))


# --- RFC 5424 --------------------------------------------------------------------------------


def test_rfc5424_layout() -> None:
    rec = record({"path": "db/plant7/password", "bundle_seq": 9, "ok": False, "gone": None})
    line = format_rfc5424("agent-7", rec, hostname="gw 1", procid="123")
    msg = parse_rfc5424(line)
    assert msg.pri == FACILITY_LOG_AUDIT * 8 + 6
    assert (msg.timestamp, msg.hostname, msg.app, msg.procid, msg.msgid) == (
        "2026-11-29T10:00:00.123456Z",
        "gw_1",
        "relay",
        "123",
        "secret.read",
    )
    assert msg.sd == {
        "relay@32473": {
            "agent": "agent-7",
            "seq": "1",
            "session_id": "sess-1",
            "prev_hash": rec.prev_hash,
            "hash": rec.hash,
            "bundle_seq": "9",
            "ok": "false",
            "path": "db/plant7/password",
        }
    }
    assert msg.msg == "secret.read seq=1"


def test_rfc5424_escapes_param_values() -> None:
    line = format_rfc5424('ag"]\\', record({"reason": NASTY}), hostname="h")
    assert '\\"' in line and "\\]" in line and "\\\\" in line
    params = parse_rfc5424(line).sd["relay@32473"]
    assert params["reason"] == NASTY
    assert params["agent"] == 'ag"]\\'


def test_rfc5424_severity_follows_the_event() -> None:
    assert severity_of("bundle.rejected") == 4
    assert severity_of("secret.denied") == 4
    assert severity_of("config.changed") == 5
    assert severity_of("secret.read") == 6
    line = format_rfc5424("a", record({}, "bundle.rejected"), hostname="h")
    assert parse_rfc5424(line).pri == FACILITY_LOG_AUDIT * 8 + 4


def test_rfc5424_cuts_long_values() -> None:
    line = format_rfc5424("a", record({"reason": "x" * 4000}), hostname="h")
    value = parse_rfc5424(line).sd["relay@32473"]["reason"]
    assert len(value) == MAX_SYSLOG_VALUE_CHARS
    assert value.endswith("...[truncated]")


# --- CEF -------------------------------------------------------------------------------------


def test_cef_layout_and_keys() -> None:
    rec = record({"path": "db/x", "user": "ops", "reason": "ok", "bundle_seq": 3, "app": "cron"})
    header, ext = parse_cef(format_cef("agent-7", rec, version="0.1.0"))
    assert header == ["CEF:0", "relay", "relay", "0.1.0", "secret.read", "secret read", "3"]
    assert ext == {
        "rt": str(int(T0.timestamp() * 1000)),
        "deviceExternalId": "agent-7",
        "externalId": "1",
        "relaySessionId": "sess-1",
        "relayPrevHash": rec.prev_hash,
        "relayHash": rec.hash,
        "filePath": "db/x",
        "suser": "ops",
        "reason": "ok",
        "relayBundleSeq": "3",
        "relayApp": "cron",
    }


def test_cef_escapes_header_and_extension() -> None:
    line = format_cef("a=b\\c", record({"reason": NASTY}), version="1|2\\3")
    assert "\n" not in line and "\r" not in line
    assert "1\\|2\\\\3" in line
    header, ext = parse_cef(line)
    assert header[3] == "1|2\\3"
    assert ext["reason"] == NASTY
    assert ext["deviceExternalId"] == "a=b\\c"


def test_cef_severity_and_syslog_carrier() -> None:
    line = format_cef_syslog("a", record({}, "bundle.rejected"), hostname="h", procid="1")
    msg = parse_rfc5424(line)
    assert msg.msgid == "bundle.rejected" and msg.sd == {}
    header, _ = parse_cef(msg.msg)
    assert header[6] == "6"


def test_cef_keys_are_distinct_for_distinct_fields() -> None:
    names = ["a_b", "ab", "a_bc", "ab_c", "bundle_seq", "bundleseq", "path", "file_path"]
    assert len({cef_key(n) for n in names}) == len(names)


_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)


@settings(max_examples=200, deadline=None)
@given(reason=_text, agent=_text)
def test_any_text_round_trips_through_both_syslog_formats(reason: str, agent: str) -> None:
    rec = record({"reason": reason, "path": agent})
    params = parse_rfc5424(format_rfc5424(agent, rec, hostname="h")).sd["relay@32473"]
    assert (params["reason"], params["agent"], params["path"]) == (reason, agent, agent)
    _, ext = parse_cef(format_cef(agent, rec))
    assert (ext["reason"], ext["deviceExternalId"], ext["filePath"]) == (reason, agent, agent)


@pytest.mark.parametrize("value", [1.5, -0.0, 10**20, True, None])
def test_scalar_rendering(value: object) -> None:
    rec = record({"n": value})
    params = parse_rfc5424(format_rfc5424("a", rec, hostname="h")).sd["relay@32473"]
    expected = {True: "true", None: None}.get(value, repr(value))  # type: ignore[call-overload]
    assert params.get("n") == expected
